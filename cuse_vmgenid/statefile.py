"""The state file: what a restarted daemon needs to never go back.

Mode 0600: it holds the GUID, which the seed keeps from userspace.  Written
atomically (write, fsync, rename, fsync of the folder), so a crash leaves
the old file or the new one, never half of either.
"""

import json
import os
from dataclasses import asdict, dataclass
from typing import Optional

BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass
class SavedState:
    boot_id: str
    counter: int
    guid: Optional[str] = None


def current_boot_id() -> str:
    with open(BOOT_ID) as f:
        return f.read().strip()


def load(path: str) -> Optional[SavedState]:
    try:
        with open(path) as f:
            data = json.load(f)
        return SavedState(str(data["boot_id"]), int(data["counter"]),
                          data.get("guid"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable state file {path}: {e}") from e


def save(path: str, state: SavedState) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o755, exist_ok=True)
    tmp = f"{path}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, json.dumps(asdict(state)).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
