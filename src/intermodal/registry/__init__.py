"""Registries: the OCI distribution API v2 client, its authentication flows and Docker's credential file.

Pure protocol and bookkeeping; which blobs to move and where they go is decided in `engine/distribution.py`.
"""
