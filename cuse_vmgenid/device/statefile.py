# SPDX-License-Identifier: MIT
"""The state file: what a restarted daemon needs to never go back.

Mode 0600: it holds the GUID, which the seed keeps from userspace.  Written
atomically (write, fsync, rename, fsync of the folder), so a crash leaves
the old file or the new one, never half of either.
"""

import fcntl
import json
import logging
import os
import stat
from dataclasses import dataclass
from typing import Optional

from vmgenid.procinfo import read_text

from .. import safefiles
from .._cuse import ffi, lib
from .errors import check
from .state import COUNTER_MAX, MIN_TARGET_MAX

log = logging.getLogger(__name__)

BOOT_ID = "/proc/sys/kernel/random/boot_id"
# The largest page value a restart takes from the page (one ahead of the
# state file of this boot, or with none): FORCE_GEN_UPDATE_MIN stops there,
# and one bump a second would need 68 years to pass it.  A larger one is
# taken for junk, unless the state file is past it too (root's
# FORCE_GEN_UPDATE_MIN took the counter there): then only a page from
# which no change could be counted is (0xffffffff, 0xff bytes).
PAGE_TRUSTED_MAX = MIN_TARGET_MAX
# What the daemon writes is under 160 bytes (native/shim/statefile.c), its GUID
# 36 characters.
STATE_MAX = 4096
GUID_TEXT_MAX = lib.VMGENID_GUID_TEXT


@dataclass
class SavedState:
    boot_id: str
    counter: int
    guid: Optional[str] = None
    # The kernel-log tier: the sequence number of the last /dev/kmsg record
    # it applied (files written before it, or by another tier, have none).
    kmsg_seq: Optional[int] = None
    # The vmclock tier's vm_generation_counter (absent in older files).
    vmclock_counter: Optional[int] = None


def page_limit(saved_counter: Optional[int]) -> int:
    """The largest page value taken, for a state file of this boot holding
    @saved_counter (None: none)."""
    if saved_counter is None or saved_counter < PAGE_TRUSTED_MAX:
        return PAGE_TRUSTED_MAX
    return COUNTER_MAX - 1


def current_boot_id() -> str:
    return read_text(BOOT_ID).strip()


class CorruptStateFile(ValueError):
    """The daemon will not guess: its one fatal line says what to do."""

    def __init__(self, path: str, what: str):
        super().__init__(
            f"unreadable state file {path}: {what}; move it away and start "
            "again: the daemon then resumes from the page and bumps once "
            "(clients see a change)")


def load(path: str) -> Optional[SavedState]:
    """The saved state, None if there is none; CorruptStateFile for
    anything that is not exactly what the daemon writes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CorruptStateFile(path, e.strerror) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptStateFile(path, "not a regular file")
        text = os.read(fd, STATE_MAX + 1)
    except OSError as e:
        raise CorruptStateFile(path, e.strerror) from None
    finally:
        os.close(fd)
    if len(text) > STATE_MAX:
        raise CorruptStateFile(path, f"longer than {STATE_MAX} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CorruptStateFile(path, f"not JSON ({str(e)[:80]})") from None
    return _saved_state(path, data)


def _saved_state(path: str, data) -> SavedState:
    """The fields, each checked against what the daemon writes."""
    if not isinstance(data, dict):
        raise CorruptStateFile(path, "not a JSON object")
    boot_id, counter = data.get("boot_id"), data.get("counter")
    guid = data.get("guid")
    if not isinstance(boot_id, str):
        raise CorruptStateFile(path, "no boot_id string")
    if (not isinstance(counter, int) or isinstance(counter, bool)
            or not 0 <= counter <= COUNTER_MAX):
        raise CorruptStateFile(path, f"counter {str(counter)[:40]} is not "
                               f"an integer from 0 to {COUNTER_MAX}")
    if guid is not None and not (isinstance(guid, str)
                                 and len(guid) <= GUID_TEXT_MAX):
        raise CorruptStateFile(path, "guid is neither null nor a GUID")
    kmsg_seq = data.get("kmsg_seq")
    if kmsg_seq is not None and (not isinstance(kmsg_seq, int)
                                 or isinstance(kmsg_seq, bool)
                                 or kmsg_seq < 0):
        raise CorruptStateFile(path, f"kmsg_seq {str(kmsg_seq)[:40]} is "
                               "neither null nor a record number")
    return SavedState(boot_id, counter, guid, kmsg_seq,
                      _vmclock_counter(data.get("vmclock_counter")))


def _vmclock_counter(value) -> Optional[int]:
    """A u64, or None (then a restart compares with nothing, and bumps)."""
    if type(value) is int and 0 <= value < 1 << 64:
        return value
    return None


@dataclass(frozen=True)
class Resumption:
    """Where a starting daemon resumes (docs/interface.rst, "The restart
    rule"): the counter, whether the state file is of this boot (then the
    change source decides whether to bump), why to bump once regardless
    (None: no such reason), and the line to log at WARNING when the page
    is repaired or read (None: the page holds the state file's counter,
    logged at INFO)."""
    counter: int
    same_boot: bool
    bump_why: Optional[str]
    warning: Optional[str]


def resume(saved: Optional[SavedState], boot_id: str,
           page: Optional[int], page_path: str) -> Resumption:
    """The restart rule, for the state file's @saved state (None: none)
    and the value @page holds (None: the page was just created).  The
    state file of this boot is the authority, but it may lag the page:
    clients may have seen a value up to page_limit() that is ahead of it,
    so the daemon resumes from that and counts one change; any other
    value is repaired from the state file.  Without a state file of this
    boot the page is read the same way (else 0), and a change counted."""
    same_boot = saved is not None and saved.boot_id == boot_id
    trusted = page is not None and page <= page_limit(
        saved.counter if same_boot else None)
    if same_boot:
        if trusted and page > saved.counter:
            return Resumption(
                page, True, "restart: the page is ahead of the state file",
                f"same boot: {page_path} holds {page}, ahead of the state "
                f"file's {saved.counter} (a commit of it failed): clients "
                "may have seen it, resuming from it")
        repair = None
        if page is None:
            repair = (f"same boot: resuming at {saved.counter} (the state "
                      f"file's); {page_path} was missing and is created "
                      "with it")
        elif page != saved.counter:
            repair = (f"same boot: resuming at {saved.counter} (the state "
                      f"file's); {page_path} held {page}, which the state "
                      "file does not back, and is repaired")
        return Resumption(saved.counter, True, None, repair)
    if page is None:
        return Resumption(0, False, None, None)
    if not trusted:
        return Resumption(
            0, False, "restart without a state file",
            f"no state file for this boot and {page_path} holds {page}, "
            f"above {PAGE_TRUSTED_MAX:#x}: not a counter the daemon wrote; "
            "resuming from 0")
    return Resumption(
        page, False, "restart without a state file",
        f"no state file for this boot but {page_path} holds {page}: "
        "resuming from it")


class StateFile:
    """The state file at @path for boot @boot_id, written on every bump.

    A bump right after a restore runs where every code path touched for the
    first time costs (under emulation, milliseconds each), and the state
    file comes before the wake-ups: so the folder is opened once, the next
    temporary file (a name unique to this daemon, locked while it has it:
    see remove_leftovers()) is made ready by prepare() after each bump's
    wake-ups and filled ahead by stage(), and save() is one call into C
    (native/shim/statefile.c), which the publisher commits to
    (native/shim/publisher.c).
    """

    def __init__(self, path: str, boot_id: str):
        self.path = path
        self.boot_id = boot_id
        folder, name = os.path.split(path)
        folder = folder or "."
        safefiles.private_folder(folder)
        self._dir_fd = os.open(folder,
                               os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        remove_leftovers(self._dir_fd, path)
        # This daemon's own temporary name: C creates it O_EXCL.
        tmp_name = os.path.basename(safefiles.unique_name(path))
        self._sf = lib.vmgenid_statefile_open(self._dir_fd, name.encode(),
                                              tmp_name.encode(),
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
        """The C state file, which the publisher commits to."""
        return self._sf

    def prepare(self) -> None:
        """Make the next save's temporary file, if not done yet."""
        check(lib.vmgenid_statefile_prepare(self._sf), self.path, OSError)

    def set_vmclock(self, vmclock_counter: Optional[int]) -> None:
        """The vmclock tier's vm_generation_counter, kept by every later
        commit (None: none)."""
        lib.vmgenid_statefile_set_vmclock(
            self._sf, vmclock_counter is not None, vmclock_counter or 0)

    def discard(self) -> None:
        """Remove the next save's temporary file (a later save makes it
        again): for a daemon that stops before serving."""
        lib.vmgenid_statefile_discard(self._sf)

    def close(self) -> None:
        """After the publisher is gone."""
        lib.vmgenid_statefile_close(self._sf)
        self._sf = ffi.NULL
        os.close(self._dir_fd)


# Names listed in remove_leftovers()'s line; the count says the rest.
LEFTOVERS_NAMED = 8


def remove_leftovers(dir_fd: int, path: str) -> None:
    """The temporary files of the state file @path (in the folder open as
    @dir_fd) that daemons which did not stop left: killed, or crashed.
    Only names safefiles.unique_name(path) makes, only regular files, and
    only those no daemon holds (native/shim/statefile.c locks its own);
    a symlink is never followed.  One line for what was removed, one for
    each that could not be."""
    removed = []
    for entry in sorted(os.listdir(dir_fd)):
        if not safefiles.is_unique_name(path, entry):
            continue
        try:
            if _remove_if_dead(dir_fd, entry):
                removed.append(entry)
        except OSError as e:
            log.warning("cannot remove %s, left beside %s by a daemon that "
                        "did not stop: %s", entry, path, e.strerror)
    if removed:
        named = ", ".join(removed[:LEFTOVERS_NAMED])
        more = len(removed) - LEFTOVERS_NAMED
        log.info("removed %s left beside %s by %s that did not stop: %s%s",
                 "1 temporary file" if len(removed) == 1
                 else f"{len(removed)} temporary files", path,
                 "a daemon" if len(removed) == 1 else "daemons", named,
                 f" and {more} more" if more > 0 else "")


def _remove_if_dead(dir_fd: int, entry: str) -> bool:
    """Remove @entry if it is a regular file nobody holds the lock of."""
    try:
        st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return False
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return False        # gone meanwhile
    try:
        if not os.path.samestat(os.fstat(fd), st):
            return False    # replaced meanwhile: looked at next start
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False    # its daemon runs
        # Under the lock: a daemon that made the file meanwhile sees it
        # gone and makes it again.
        os.unlink(entry, dir_fd=dir_fd)
        return True
    finally:
        os.close(fd)
