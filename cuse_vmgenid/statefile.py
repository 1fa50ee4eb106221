"""The state file: what a restarted daemon needs to never go back.

Mode 0600: it holds the GUID, which the seed keeps from userspace.  Written
atomically (write, fsync, rename, fsync of the folder), so a crash leaves
the old file or the new one, never half of either.
"""

import json
import os
from dataclasses import dataclass
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


class StateFile:
    """The state file at @path, written on every bump.  The folder is made
    and opened once: a bump right after a restore runs on cold caches
    (under emulation, every code path touched for the first time costs),
    so save() does only the write, fsync, rename and folder fsync."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = f"{path}.new"
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, mode=0o755, exist_ok=True)
        self._dir_fd = os.open(folder,
                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def load(self) -> Optional[SavedState]:
        return load(self.path)

    def save(self, state: SavedState) -> None:
        data = json.dumps({"boot_id": state.boot_id,
                           "counter": state.counter, "guid": state.guid})
        fd = os.open(self._tmp,
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, data.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(self._tmp, self.path)
        os.fsync(self._dir_fd)

    def close(self) -> None:
        os.close(self._dir_fd)
