# SPDX-License-Identifier: MIT
"""The status files' format and where they are: what cuse-vmgenid writes
(cuse_vmgenid.service.status, with the rules of when and how) and `vmgenid
status` reads.

Two parts (docs/interface.rst, "Privacy"): the status file, mode 0644,
and the outdated watchers in a folder next to it (watchers_dir()) only
root may list: all of them in `all.json` (root's), and each uid's in
`<uid>.json`, owned by that uid (watcher_file()).
"""

import enum
import os
from typing import Optional

#: The daemon's status file, unless told otherwise.
DEFAULT_PATH = "/run/vmgenid/status.json"
#: What the file's "schema" says; `vmgenid` refuses any other (a daemon
#: of another version, still running after an upgrade, wrote it).
STATUS_SCHEMA = 1


class ChangeReason(enum.Enum):
    """The class of a change, all the status says of why (the log says
    more)."""
    HARDWARE = "hardware"   # the GUID changed
    FORCED = "forced"       # VMGENID_FORCE_GEN_UPDATE(_MIN)
    NOTIFY = "notify"       # VMGENID_NOTIFY, no GUID to compare
    SIGNAL = "signal"       # SIGUSR1, no GUID to compare
    HINT = "hint"           # the kernel log or a poll, no GUID to compare
    RESTART = "restart"     # a change may have been missed while down


def watchers_dir(status_path: str) -> str:
    """The folder of the per-uid watcher lists of a status file."""
    return os.path.join(os.path.dirname(status_path) or ".", "watchers")


def watcher_file(folder: str, uid: Optional[int]) -> str:
    """uid's list, or (None) the list of all, root's."""
    return os.path.join(folder, "all.json" if uid is None else f"{uid}.json")
