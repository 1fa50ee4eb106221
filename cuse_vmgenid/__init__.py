"""cuse-vmgenid: the VM Generation ID device, served from userspace."""

__version__ = "0.1.0"
