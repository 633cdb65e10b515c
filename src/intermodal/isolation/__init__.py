"""Isolation backends behind one protocol (create/start/exec/kill/delete/state): namespaces, external OCI
runtimes (crun/runc) and the micro-VM."""
