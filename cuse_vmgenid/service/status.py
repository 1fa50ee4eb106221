# SPDX-License-Identifier: MIT
"""The status files: what `vmgenid status` shows, written by the daemon.

The same report, at the same moments, goes to systemd as the unit's
STATUS= line (`published`), so `systemctl status` follows the figures
without a datagram per request.

Kept off the bump's critical path (state file, page, wake-ups): a
transition only marks it dirty, and the loop writes it after the
wake-ups, at most once per MIN_INTERVAL, so a storm of opens costs one
write, not one per open.  A write that took long (thousands of watchers, a
slow disk) pushes the next one back, so the status never takes more than
MAX_SHARE of the loop's time.  And it waits for a pause in the requests
(QUIET after the last batch), up to MAX_DELAY after it became dirty: a
thousand acknowledgements after a change are answered first, then the
status says where they left things.

Two parts, their format and paths in vmgenid.status (the client's, which
reads them; docs/interface.rst, "Privacy"):

- the status file, mode 0644: counts, the source, the last change's time
  and reason class (ChangeReason, never free text: no GUID, no caller),
  the daemon's pid;
- the outdated watchers (pid, uid, command), in a folder next to it
  (vmgenid.status.watchers_dir()) only root may list (0711): all of them in `all.json`
  (root's, 0600), and each uid's in `<uid>.json`, owned by that uid, mode
  0400, with how many that uid holds in all ("outdated": the lists are
  cut).  A user reads its own file by name and nothing else.  Root reads
  all.json only: a user may rewrite the file it owns, which then misleads
  no one but that user.

Each is written with write + rename, so a reader sees the old file or the
new one, never half of either.
"""

import json
import os
import time
from typing import Callable, Optional

from vmgenid.status import watcher_file, watchers_dir

from .. import safefiles

MIN_INTERVAL = 0.1   # seconds between two writes
MAX_SHARE = 0.1      # of the loop's time, at most
QUIET = 0.02         # seconds without requests before a write
MAX_DELAY = 1.0      # seconds a dirty status waits for a pause, at most
STATUS_MODE = 0o644
WATCHERS_DIR_MODE = 0o711    # searchable, not listable: who has a file
WATCHER_FILE_MODE = 0o400    # is nobody else's business
ROOT_FILE_MODE = 0o600


class StatusFile:
    def __init__(self, path: str, report: Callable[[], dict],
                 watchers: Callable[[], list[dict]] = list,
                 counts: Callable[[], dict[int, int]] = dict,
                 clock: Callable[[], float] = time.monotonic,
                 published: Callable[[dict], None] = lambda report: None):
        """report(): the status; watchers(): the outdated watchers to list,
        counts(): how many each uid holds in all (WatcherFiles.write);
        published(report): told each report written.
        path '': no files, the report only goes to published()."""
        self.path = path
        self._report = report
        self._watchers = watchers
        self._counts = counts
        self._published = published
        self._watcher_files = (WatcherFiles(watchers_dir(path)) if path
                               else None)
        self._clock = clock
        self._dirty = True
        self._dirty_since = 0.0
        self._last_write: Optional[float] = None
        self._last_busy: Optional[float] = None
        self._interval = MIN_INTERVAL

    @property
    def dirty(self) -> bool:
        return self._dirty

    def mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._dirty_since = self._clock()

    def busy(self, now: float) -> None:
        """The loop just answered requests."""
        self._last_busy = now

    def due(self) -> Optional[float]:
        """When the loop should write next (monotonic), None if clean."""
        if not self._dirty:
            return None
        if self._last_write is None:
            return 0.0
        due = self._last_write + self._interval
        if self._last_busy is not None:
            due = max(due, min(self._last_busy + QUIET,
                               self._dirty_since + MAX_DELAY))
        return due

    def write_if_due(self, now: float) -> None:
        due = self.due()
        if due is None or now < due:
            return
        self._dirty = False
        self._last_write = now
        started = self._clock()
        try:
            report = self._report()
            self._published(report)
            if self.path:
                # The lists first: a status a reader sees is never newer.
                self._watcher_files.write(self._watchers(), self._counts())
                write_atomically(self.path, _json(report))
        finally:
            spent = self._clock() - started
            self._interval = max(MIN_INTERVAL, spent / MAX_SHARE)


class WatcherFiles:
    """The per-uid lists: written when they changed, removed when empty."""

    def __init__(self, folder: str):
        self.folder = folder
        # None until the first write, which finds a previous daemon's.
        self._written: Optional[dict[int, bytes]] = None

    def write(self, watchers: list[dict],
              outdated: Optional[dict[int, int]] = None) -> None:
        """watchers: the listed outdated ones, each with its "uid";
        outdated: how many each uid holds in all (default: those
        listed)."""
        outdated = outdated or {}
        lists: dict[int, dict] = {}
        for uid in [w["uid"] for w in watchers] + list(outdated):
            lists.setdefault(uid, {"uid": uid, "outdated": 0,
                                   "outdated_watchers": []})
        for w in watchers:
            lists[w["uid"]]["outdated_watchers"].append(w)
        for uid, content in lists.items():
            content["outdated"] = max(len(content["outdated_watchers"]),
                                      outdated.get(uid, 0))
        if self._written is None:
            os.makedirs(self.folder, mode=WATCHERS_DIR_MODE, exist_ok=True)
            os.chmod(self.folder, WATCHERS_DIR_MODE)
            self._written = {int(name[:-len(".json")]): b""
                             for name in os.listdir(self.folder)
                             if name.endswith(".json")
                             and name[:-len(".json")].isdigit()}
        for uid in set(self._written) - set(lists):
            try:
                os.unlink(watcher_file(self.folder, uid))
            except FileNotFoundError:
                pass
            del self._written[uid]
        for uid, content in lists.items():
            data = _json(content)
            if self._written.get(uid) != data:
                write_atomically(watcher_file(self.folder, uid), data,
                                 WATCHER_FILE_MODE, owner=uid)
                self._written[uid] = data
        write_atomically(watcher_file(self.folder, None),
                         _json({"outdated_watchers": watchers}),
                         ROOT_FILE_MODE)


def _json(content: dict) -> bytes:
    return json.dumps(content, indent=1).encode() + b"\n"


def write_atomically(path: str, data: bytes, mode: int = STATUS_MODE,
                     owner: int = 0) -> None:
    """A new file under a unique name (never a symlink someone planted),
    then renamed over path."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = safefiles.create_exclusive(path, mode)
    try:
        try:
            if owner != os.geteuid():
                os.fchown(fd, owner, -1)
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise
