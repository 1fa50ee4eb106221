"""The state file: what a restarted daemon needs to never go back.

Mode 0600: it holds the GUID, which the seed keeps from userspace.  Written
atomically (write, fsync, rename, fsync of the folder), so a crash leaves
the old file or the new one, never half of either.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

from ._cuse import ffi, lib

BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass
class SavedState:
    boot_id: str
    counter: int
    guid: Optional[str] = None
    # The vmclock tier's vm_generation_counter (absent in older files).
    vmclock_counter: Optional[int] = None


def current_boot_id() -> str:
    with open(BOOT_ID) as f:
        return f.read().strip()


def load(path: str) -> Optional[SavedState]:
    try:
        with open(path) as f:
            data = json.load(f)
        return SavedState(str(data["boot_id"]), int(data["counter"]),
                          data.get("guid"),
                          _vmclock_counter(data.get("vmclock_counter")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"unreadable state file {path}: {e}") from e


def _vmclock_counter(value) -> Optional[int]:
    """A u64, or None (then a restart compares with nothing, and bumps)."""
    if type(value) is int and 0 <= value < 1 << 64:
        return value
    return None


class StateFile:
    """The state file at @path for boot @boot_id, written on every bump.

    A bump right after a restore runs where every code path touched for the
    first time costs (under emulation, milliseconds each), and the state
    file comes before the wake-ups: so the folder is opened once, the next
    temporary file (@path.new) is made ready by prepare() after each bump's
    wake-ups and filled ahead by stage(), and save() is one call into C
    (decl/statefile.c), which the armed bump shares (decl/armedbump.c).
    """

    def __init__(self, path: str, boot_id: str):
        self.path = path
        self.boot_id = boot_id
        folder, name = os.path.split(path)
        folder = folder or "."
        os.makedirs(folder, mode=0o755, exist_ok=True)
        self._dir_fd = os.open(folder,
                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._sf = lib.vmgenid_state_open(self._dir_fd, name.encode(),
                                          f"{name}.new".encode(),
                                          boot_id.encode())
        if self._sf == ffi.NULL:
            err = ffi.errno
            os.close(self._dir_fd)
            raise OSError(err, f"{path}: {os.strerror(err)}")
        self.prepare()

    def load(self) -> Optional[SavedState]:
        return load(self.path)

    @property
    def c_handle(self):
        """The C state file, which the armed bump commits to too."""
        return self._sf

    def prepare(self) -> None:
        """Make the next save's temporary file, if not done yet."""
        _check(lib.vmgenid_state_prepare(self._sf), self.path)

    def stage(self, counter: int, guid: Optional[str]) -> None:
        """Write (counter, guid) into the next commit's file now: a commit
        of it, or of it with another GUID, then only overwrites what
        differs."""
        _check(lib.vmgenid_state_stage(
            self._sf, counter,
            ffi.NULL if guid is None else guid.encode()), self.path)

    def save(self, counter: int, guid: Optional[str],
             vmclock_counter: Optional[int] = None) -> bool:
        """Commit (counter, guid, vmclock_counter) for this boot; False if
        the file held exactly that already (the armed bump committed it)."""
        lib.vmgenid_state_set_vmclock(self._sf, vmclock_counter is not None,
                                      vmclock_counter or 0)
        return _check(lib.vmgenid_state_save(
            self._sf, counter,
            ffi.NULL if guid is None else guid.encode()), self.path) == 1

    def close(self) -> None:
        """After the armed bump is gone."""
        lib.vmgenid_state_close(self._sf)
        self._sf = ffi.NULL
        os.close(self._dir_fd)


def _check(result: int, path: str) -> int:
    if result < 0:
        raise OSError(-result, f"{path}: {os.strerror(-result)}")
    return result
