"""Pure OCI image handling: digests, references, manifests and configs, the content store, layers, archives.

Nothing here calls into Linux beyond ordinary file I/O, so it is easy to test and reuse.
"""
