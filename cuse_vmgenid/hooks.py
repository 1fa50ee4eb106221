# SPDX-License-Identifier: MIT
"""hooks.d: executables the daemon runs on each change of generation.

One hook at a time, in name order, each a child process watched from the
daemon's loop through a pidfd, so the loop keeps serving the device while a
hook runs (a hook may itself use /dev/vmgenid or `vmgenid status`).  Each
run is for one generation; a change during a run lets the run finish, then
one more run goes for the newest counter (changes in between coalesce).

The daemon's own watcher (a watcher entry in the state machine with no CUSE
file) acknowledges the generation a run was for once the run ends, so
VMGENID_WAIT_WATCHERS returns only after the hooks are done too.

The folder is listed again at each run: hooks can be added or removed
without a restart.  Names starting with "." or ending with "~", and package
manager leftovers (".dpkg-", ".ucf-"), are skipped, as are files that are
not executable.  Hooks run as root, so one runs only if no one but root
could have put it there or changed it (Trust; docs/interface.rst,
"Privacy"); anything else is skipped with a log line saying why.

A hook that outlives its timeout is killed with everything it started,
also what left its process group or session (setsid, double forks): each
hook is the child subreaper of its own descendants (PR_SET_CHILD_SUBREAPER,
kept across exec), so while it lives every one of them stays in its tree;
kill_tree() stops the hook and that tree, then kills them all.  Not
covered: what a hook hands to another service (systemd-run, at, a
daemon's socket), and what it leaves running after it exits in time.

A hook's standard output and error are one pipe the loop reads (HookOutput):
its lines go to the log, escaped, up to OUTPUT_LINES lines and
OUTPUT_BYTES bytes per hook run; the rest is read and dropped, counted in
one last line, so a hook that writes without end never fills the log and
never blocks on a full pipe.  The pipe is closed when the hook ends: what
it left running then writes to a closed pipe (EPIPE).
"""

import ctypes
import logging
import os
import signal
import stat
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

SKIPPED_MARKS = (".dpkg-", ".ucf-")
OUTPUT_LINES = 100                  # of a hook's output in the log, per run
OUTPUT_BYTES = 16384                # at most, the rest dropped and counted
READ_SIZE = 65536
READS_PER_ROUND = 16                # the loop serves between two rounds
MAX_SYMLINKS = 40                   # as the kernel's path walk
PR_SET_CHILD_SUBREAPER = 36         # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Trust:
    """Whose files may run as hooks: owned by `owner` and not group- or
    world-writable, the file (after every symlink) and every directory on
    the way to it from `top` down.  The daemon's is ROOT; tests on a host
    without root name their own uid and folder."""
    owner: int = 0
    top: str = "/"

    def refusal(self, path: str) -> Optional[str]:
        """Why path may not run as a hook, or None.  The path is walked as
        the kernel would, one name at a time, so every directory passed
        through and every directory holding a symlink is checked (a
        symlink itself has no permissions: who may replace it is who may
        write its directory)."""
        done = "/"
        reason = self._refusal(done, os.lstat(done))
        todo = [n for n in os.path.abspath(path).split("/") if n]
        links = 0
        while todo and reason is None:
            name = todo.pop(0)
            if name in (".", ".."):
                done = os.path.dirname(done) if name == ".." else done
                continue
            here = os.path.join(done, name)
            st = os.lstat(here)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    return f"more than {MAX_SYMLINKS} symlinks"
                target = os.readlink(here)
                if target.startswith("/"):
                    done = "/"
                todo = [n for n in target.split("/") if n] + todo
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                return f"{here} is not a directory"
            reason = self._refusal(here, st)
            done = here
        if reason is None and not stat.S_ISREG(os.stat(path).st_mode):
            return "not a regular file"
        return reason

    def _refusal(self, path: str, st: os.stat_result) -> Optional[str]:
        if not _within(path, self.top):
            return None
        if st.st_uid != self.owner:
            return f"{path} is owned by uid {st.st_uid}, not {self.owner}"
        if st.st_mode & stat.S_IWOTH:
            return f"{path} is world-writable"
        if st.st_mode & stat.S_IWGRP:
            return f"{path} is group-writable"
        return None


ROOT = Trust()


def _within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


@dataclass
class HookResult:
    name: str
    result: str          # "exit 0", "exit 3", "killed at timeout", ...

    @property
    def ok(self) -> bool:
        return self.result == "exit 0"


class HookOutput:
    """One hook's standard output and error: a pipe, read from the loop,
    logged line by line up to the caps, the rest counted and dropped."""

    def __init__(self, name: str):
        self.name = name
        read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_end, False)
        self.fd: Optional[int] = read_end
        self._partial = b""
        self._lines = 0
        self._kept = 0          # bytes logged or waiting in _partial
        self.dropped = 0        # bytes read and not logged

    def started(self) -> None:
        """The hook holds its copy of the write end: ours goes."""
        os.close(self.write_end)
        self.write_end = -1

    def read(self) -> None:
        """What the pipe holds now, a bounded amount per call (the loop
        comes back while it stays readable); at EOF, the end."""
        for _ in range(READS_PER_ROUND):
            try:
                chunk = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            if not chunk:
                self.close()
                return
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        room = 0 if self._lines >= OUTPUT_LINES \
            else max(0, OUTPUT_BYTES - self._kept)
        kept, self.dropped = chunk[:room], self.dropped + len(chunk[room:])
        self._kept += len(kept)
        *lines, self._partial = (self._partial + kept).split(b"\n")
        for line in lines:
            self._log(line)
        if self._lines >= OUTPUT_LINES and self._partial:
            self.dropped += len(self._partial)
            self._partial = b""

    def _log(self, line: bytes) -> None:
        if self._lines < OUTPUT_LINES:
            self._lines += 1
            # Any bytes: escaped by the log's formatter (printable.py).
            log.info("hook %s: %s", self.name,
                     line.decode(errors="surrogateescape"))
        else:
            self.dropped += len(line) + 1

    def close(self) -> None:
        """The hook ended (or the daemon stops): what the pipe holds now
        is read, the last line logged, the count of what was dropped."""
        if self.fd is None:
            return
        try:
            for _ in range(READS_PER_ROUND):
                chunk = os.read(self.fd, READ_SIZE)
                if not chunk:
                    break
                self._take(chunk)
        except BlockingIOError:
            pass    # what the hook left running may write on: not waited
        os.close(self.fd)
        self.fd = None
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1
        if self._partial:
            self._log(self._partial)
            self._partial = b""
        if self.dropped:
            log.warning("hook %s: %d more bytes of output dropped (at most "
                        "%d lines, %d bytes logged per run)", self.name,
                        self.dropped, OUTPUT_LINES, OUTPUT_BYTES)


def list_hooks(folder: str, trust: Trust = ROOT) -> list[str]:
    """The executables of folder in name order that trust lets run (the
    rest logged); [] if it does not exist.  OSError if it cannot be read:
    that is not "no hooks"."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if (name.startswith(".") or name.endswith("~")
                or any(mark in name for mark in SKIPPED_MARKS)):
            continue
        path = os.path.join(folder, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            continue
        try:
            refusal = trust.refusal(path)
        except OSError as e:
            refusal = str(e)
        if refusal is None:
            found.append(path)
        else:
            log.warning("hook %s skipped: %s", path, refusal)
    return found


class HookRunner:
    def __init__(self, folder: str, timeout: float, env: dict,
                 start_generation: int,
                 finished: Callable[[int], None], trust: Trust = ROOT):
        """finished(generation) runs when a run for generation ended."""
        self.folder = folder
        self.trust = trust
        self.timeout = timeout
        self._env = env                  # VMGENID_* paths for the hooks
        self._finished = finished
        self.done_for = start_generation  # the last generation run for
        self.wanted: Optional[int] = None  # the newest change not run yet
        self.running_for: Optional[int] = None
        self._queue: list[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._pidfd: Optional[int] = None
        self._output: Optional[HookOutput] = None
        self._name: Optional[str] = None
        self._deadline: Optional[float] = None
        self._timed_out = False
        self.results: list[HookResult] = []   # of the current or last run

    # -- what the loop asks ---------------------------------------------

    def fds(self) -> list[int]:
        """The running hook's pidfd (readable once it has exited) and
        output pipe: for ready()."""
        return [fd for fd in (self._pidfd, self._output and self._output.fd)
                if fd is not None]

    def ready(self, fds: set[int], now: float) -> None:
        """Those of fds() in fds are readable: the output first, then
        the exit (which may start the next hook, on the same numbers)."""
        if self._output is not None and self._output.fd in fds:
            self._output.read()
        if self._pidfd is not None and self._pidfd in fds:
            self.exited(now)

    def deadline(self) -> Optional[float]:
        return None if self._timed_out else self._deadline

    @property
    def running(self) -> Optional[str]:
        return self._name

    # -- events -----------------------------------------------------------

    def changed(self, generation: int) -> None:
        """A bump: only noted here, off its critical path; the loop starts
        the run (service) after the wake-ups."""
        self.wanted = generation

    def service(self, now: float) -> None:
        """Start what is due: the next hook of the run, or the next run."""
        if self._proc is not None:
            if not self._timed_out and now >= self._deadline:
                self._kill_at_timeout()
            return
        while self._proc is None:
            if self.running_for is not None and self._queue:
                self._start(self._queue.pop(0), now)
            elif self.running_for is not None:
                generation, self.running_for = self.running_for, None
                self.done_for = generation
                self._finished(generation)
            elif self.wanted is not None:
                self.running_for, self.wanted = self.wanted, None
                self.results = []
                try:
                    self._queue = list_hooks(self.folder, self.trust)
                except OSError as e:
                    log.error("hooks for generation %d not run: cannot "
                              "list %s: %s", self.running_for, self.folder,
                              e.strerror)
                    self._queue = []
                    self.results.append(HookResult(
                        self.folder, f"not listed: {e.strerror}"))
                log.info("hooks: %d to run for generation %d",
                         len(self._queue), self.running_for)
            else:
                return

    def exited(self, now: float) -> None:
        """The pidfd is readable: reap the hook, log how it ended, go on."""
        proc = self._proc
        code = proc.wait()
        self._output.close()
        self._output = None
        if self._timed_out:
            result = "killed at timeout"
        elif code < 0:
            result = f"killed by signal {-code}"
        else:
            result = f"exit {code}"
        self.results.append(HookResult(self._name, result))
        # A failure at error priority: `journalctl -p err` shows it.
        level = logging.INFO if result == "exit 0" else logging.ERROR
        log.log(level, "hook %s (generation %d): %s", self._name,
                self.running_for, result)
        os.close(self._pidfd)
        self._proc = self._pidfd = self._name = self._deadline = None
        self._timed_out = False
        self.service(now)

    def stop(self) -> None:
        """At daemon exit: a hook still running is killed."""
        if self._proc is not None:
            self._kill_group()
            self._proc.wait()
            os.close(self._pidfd)
            self._output.close()
            self._proc = self._pidfd = self._output = None

    # -- internals ----------------------------------------------------------

    def _start(self, path: str, now: float) -> None:
        env = dict(os.environ, **self._env,
                   VMGENID_GENERATION=str(self.running_for),
                   VMGENID_PREVIOUS=str(self.done_for))
        output = None
        try:
            output = HookOutput(path)
            # Its own session and the subreaper of what it starts, so a
            # timeout finds and kills all of that; SIGUSR1 unblocked: the
            # daemon blocks it for its signalfd, and a blocked mask
            # survives exec.
            proc = subprocess.Popen(
                [path], env=env, stdin=subprocess.DEVNULL,
                stdout=output.write_end, stderr=output.write_end,
                close_fds=True, start_new_session=True,
                preexec_fn=_prepare_hook)
        except OSError as e:
            if output is not None:
                output.close()
            self.results.append(HookResult(path, f"not started: {e}"))
            log.error("hook %s (generation %d): not started: %s", path,
                      self.running_for, e)
            return
        output.started()
        self._output = output
        self._proc = proc
        self._pidfd = os.pidfd_open(proc.pid)
        self._name = path
        self._deadline = now + self.timeout
        log.debug("hook %s started (pid %d)", path, proc.pid)

    def _kill_at_timeout(self) -> None:
        log.warning("hook %s (generation %d): still running after %gs: "
                    "killed", self._name, self.running_for, self.timeout)
        self._timed_out = True
        self._kill_group()

    def _kill_group(self) -> None:
        kill_tree(self._proc.pid)


def kill_tree(pid: int) -> None:
    """SIGKILL process pid (a subreaper: its descendants stay in its tree
    while it lives), its process group and all its descendants.  All are
    stopped first, top down, until a look at /proc finds no new one: a
    stopped process can neither fork nor reap, so none escapes and no pid
    is reused before the kill."""
    stopped: set[int] = set()
    new = {pid}
    while new:
        for each in new:
            _signal(each, signal.SIGSTOP)
        stopped |= new
        new = _descendants(pid) - stopped
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for each in stopped:
        _signal(each, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> set[int]:
    """Every living descendant of pid, from each process's parent in
    /proc/PID/stat (read as bytes: a command name may be anything)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue            # gone meanwhile
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _prepare_hook() -> None:
    """In the hook's process, before exec."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"PR_SET_CHILD_SUBREAPER: {os.strerror(err)}")
