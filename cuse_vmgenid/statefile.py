"""The state file: what a restarted daemon needs to never go back.

Mode 0600: it holds the GUID, which the seed keeps from userspace.  Written
atomically (write, fsync, rename, fsync of the folder), so a crash leaves
the old file or the new one, never half of either.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

from ._cuse import lib

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
    """The state file at @path, written on every bump.

    A bump right after a restore runs where every code path touched for the
    first time costs (under emulation, milliseconds each), and the state
    file comes before the wake-ups: so the folder is opened once, the next
    temporary file (@path.new, empty) is made ready by prepare() after each
    bump's wake-ups, and save() is one call into C (decl/statefile.c).
    """

    def __init__(self, path: str):
        self.path = path
        folder, name = os.path.split(path)
        folder = folder or "."
        self._name = name.encode()
        self._tmp_name = f"{name}.new".encode()
        os.makedirs(folder, mode=0o755, exist_ok=True)
        self._dir_fd = os.open(folder,
                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._tmp_fd = -1
        self.prepare()

    def load(self) -> Optional[SavedState]:
        return load(self.path)

    def prepare(self) -> None:
        """Make the next save's temporary file, if not done yet."""
        if self._tmp_fd < 0:
            self._tmp_fd = _check(lib.vmgenid_state_prepare(
                self._dir_fd, self._tmp_name), self.path)

    def save(self, state: SavedState) -> None:
        # JSON with no escaping needed: a boot id and a GUID are hex digits
        # and dashes.
        guid = b"null" if state.guid is None else b'"%s"' % state.guid.encode()
        data = b'{"boot_id": "%s", "counter": %d, "guid": %s}\n' % (
            state.boot_id.encode(), state.counter, guid)
        self.prepare()
        fd, self._tmp_fd = self._tmp_fd, -1     # commit closes it
        _check(lib.vmgenid_state_commit(fd, self._dir_fd, self._tmp_name,
                                        self._name, data, len(data)),
               self.path)

    def close(self) -> None:
        if self._tmp_fd >= 0:
            os.close(self._tmp_fd)
            os.unlink(self._tmp_name, dir_fd=self._dir_fd)
            self._tmp_fd = -1
        os.close(self._dir_fd)


def _check(result: int, path: str) -> int:
    if result < 0:
        raise OSError(-result, f"{path}: {os.strerror(-result)}")
    return result
