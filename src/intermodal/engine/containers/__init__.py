"""Containers: records on disk, the OCI bundle each one runs from, its lifecycle, logs and monitor."""
