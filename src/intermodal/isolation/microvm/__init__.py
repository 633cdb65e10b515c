"""The micro-VM backend: an OCI runtime (`intermodal-vm-runtime`, runc's command line) that runs a bundle in
a QEMU `-M microvm` guest, as Kata Containers does. The engine drives it exactly like a namespaces runtime."""
