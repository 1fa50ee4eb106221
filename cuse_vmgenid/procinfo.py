"""Text the kernel hands us (/proc, /sys) and what it says about a process.

The kernel's text need not be UTF-8: any user can name a process with any
bytes (prctl PR_SET_NAME), and the kernel cuts a name at 15 bytes, in the
middle of a character if need be.  So it is read as bytes and decoded
with backslashreplace: shown as it is, and never a reason to fail.
"""

from typing import Optional


def read_text(path: str) -> str:
    """The file's text; OSError if it cannot be read."""
    with open(path, "rb") as f:
        return f.read().decode(errors="backslashreplace")


def comm(pid: int) -> Optional[str]:
    """Its command name, or None once it is gone (or hidden by hidepid)."""
    try:
        return read_text(f"/proc/{pid}/comm").rstrip("\n")
    except OSError:
        return None
