"""What /proc says about a process, for logs and the status file."""

from typing import Optional


def comm(pid: int) -> Optional[str]:
    """Its command name, or None once it is gone (or hidden by hidepid)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
