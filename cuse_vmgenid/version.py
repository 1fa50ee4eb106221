# SPDX-License-Identifier: MIT
"""The daemon's version: the client's scheme and release (vmgenid.version,
client/vmgenid/version.py in the tree: one release for both
distributions), as setup.py recorded it in this package when it built."""

import os

from vmgenid import version as _scheme

__version__ = (_scheme.recorded(os.path.dirname(os.path.abspath(__file__)))
               or _scheme.RELEASE)
