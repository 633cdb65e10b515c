"""Container networking mechanisms: network namespaces, bridges and veths (rtnetlink), address management with
persistent leases, nftables rules, published-port reservation and proxies, aardvark-dns. The engine
(`engine/networks.py`) decides what a container gets; this package only knows how to make it so."""
