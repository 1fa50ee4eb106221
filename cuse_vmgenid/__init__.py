# SPDX-License-Identifier: MIT
"""cuse-vmgenid: the VM Generation ID device, served from userspace."""

from .version import __version__  # noqa: F401
