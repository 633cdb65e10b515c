"""The OCI runtime: runs OCI bundles in Linux namespaces. `runtime.sys` is the only module that calls libc."""
