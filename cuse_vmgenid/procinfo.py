"""What /proc says about a process, for logs and the status file."""

from typing import Optional


def comm(pid: int) -> Optional[str]:
    """Its command name, or None once it is gone (or hidden by hidepid)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
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
