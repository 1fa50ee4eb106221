# SPDX-License-Identifier: MIT
"""The tier `none`: nothing to watch.  Every hint and every restart is
taken as a change, and hardware changes are not seen at all: the log, the
status file and `vmgenid status` say so (unseen)."""

from typing import Optional

from .base import Change, Source, unseen


class NoSource(Source):
    name = "none"

    def __init__(self, why: str):
        self.unseen = unseen(why)

    def check(self) -> Optional[Change]:
        """Every hint is a change (a hint is no hardware change: the daemon
        does not reseed the kernel RNG for it)."""
        return Change(None)

    def restart(self, saved) -> Optional[Change]:
        return Change(None)
