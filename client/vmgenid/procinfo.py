# SPDX-License-Identifier: MIT
"""Text the kernel hands us (/proc, /sys) and what it says about a process.

The kernel's text need not be UTF-8: any user can name a process with any
bytes (prctl PR_SET_NAME), and the kernel cuts a name at 15 bytes, in the
middle of a character if need be.  So it is read as bytes and never a
reason to fail: a process name is decoded with surrogateescape (each byte
that is not UTF-8 kept, exactly, as U+DC80 + the byte), other text with
backslashreplace.  Either is shown only through printable.printable().
"""

from typing import Optional


def read_text(path: str, errors: str = "backslashreplace") -> str:
    """The file's text; OSError if it cannot be read."""
    with open(path, "rb") as f:
        return f.read().decode(errors=errors)


def comm(pid: int) -> Optional[str]:
    """Its command name, every byte kept (surrogateescape), or None once
    it is gone (or hidden by hidepid)."""
    try:
        return read_text(f"/proc/{pid}/comm",
                         "surrogateescape").removesuffix("\n")
    except OSError:
        return None


def start_time(pid: int) -> Optional[int]:
    """When it started (clock ticks after boot: /proc/<pid>/stat's field
    22), which tells a process from a later one given the same pid; None
    if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields 3 on follow the comm's last ")" (a comm may hold any byte).
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
