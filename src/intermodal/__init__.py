"""intermodal: a daemonless, Docker-compatible container engine whose images also run as micro-VMs."""

__version__ = "0.1.0"
