# SPDX-License-Identifier: MIT
"""cuse-vmgenid-hooks: runs the executables of hooks.d on each change of
generation, as a watcher of /dev/vmgenid like any other.

It opens the device read-write through the Python client (vmgenid, which
follows the client rule), blocks in read, runs hooks.d for the generation
it read, then acknowledges that generation (write): so
VMGENID_WAIT_WATCHERS, an orchestrator's "has everyone adjusted?", returns
only after the hooks have run, through the ordinary contract.  It runs
outside the daemon's sandbox (its own unit, cuse-vmgenid-hooks.service),
where a hook can write /var/lib and /etc and reach the network; the daemon
starts no process.

One hook at a time, in name order.  Each run is for one generation; the
changes that come during a run coalesce: the acknowledgement of the run's
generation then fails (the counter moved on), the next read returns the
newest counter at once and one more run goes for it.  The generation the
hooks last ran for is kept in a state file (--state, under /run): a
restart of this program runs them once if the counter moved meanwhile.
A restart of the daemon ends our open file: the client reopens the
device (waiting for the node, as long as it takes) and the hooks run if
the counter is not the one they last ran for (the daemon bumps at a
restart that may have missed a change); a device not there yet is
waited for the same way.

The folder is listed again at each run: hooks can be added or removed
without a restart (SIGHUP has nothing to reload: it is logged and
ignored).  Names starting with "." or ending with "~", and package
manager leftovers (".dpkg-", ".ucf-"), are skipped, as are files that are
not executable.  Hooks run as root, so one runs only if no one but root
could have put it there or changed it (Trust; docs/interface.rst,
"Privacy"); anything else is skipped with a log line saying why.

A hook that outlives its timeout is killed with everything it started,
also what left its process group or session (setsid, double forks): each
hook is the child subreaper of its own descendants (PR_SET_CHILD_SUBREAPER
through the cffi shim, kept across exec), so while it lives every one of
them stays in its tree; kill_tree() stops the hook and that tree, then
kills them all.  Not covered: what a hook hands to another service
(systemd-run, at, a daemon's socket), and what it leaves running after it
exits in time (under systemd: in this unit's cgroup, until it stops).

A hook's standard output and error are one pipe read while it runs
(HookOutput): its lines go to the log, escaped, up to OUTPUT_LINES lines
and OUTPUT_BYTES bytes per hook run; the rest is read and dropped, counted
in one last line, so a hook that writes without end never fills the log
and never blocks on a full pipe.  The pipe is closed when the hook ends:
what it left running then writes to a closed pipe (EPIPE).  A hook that
fails (an exit status other than 0, a signal, the timeout, not started)
is logged at error priority: `journalctl -p err` shows it.
"""

import argparse
import json
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

import vmgenid
from vmgenid.options import OneLineParser, path, with_span

from .. import safefiles
from .options import HOOK_TIMEOUT
from .journal import log_to_stderr
from ..version import __version__

log = logging.getLogger(__name__)

SKIPPED_MARKS = (".dpkg-", ".ucf-")
OUTPUT_LINES = 100                  # of a hook's output in the log, per run
OUTPUT_BYTES = 16384                # at most, the rest dropped and counted
READ_SIZE = 65536
READS_PER_ROUND = 16                # then the exit and the timeout are seen
MAX_SYMLINKS = 40                   # as the kernel's path walk
HOOKS_DIR = "/etc/vmgenid/hooks.d"
STATE = "/run/cuse-vmgenid-hooks/state.json"
STATE_MODE = 0o644
LOG_FORMAT = "cuse-vmgenid-hooks: %(levelname)s %(message)s"


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


def run_hook(path: str, env: dict, timeout: float) -> HookResult:
    """Run one hook to its end (or its timeout: killed with its tree),
    its output logged; how it ended, logged at error priority unless it
    exited 0.  A signal handler that raises (SIGTERM) while it runs kills
    it too, then the exception goes on."""
    output = None
    try:
        output = HookOutput(path)
        # Its own session and the subreaper of what it starts, so a
        # timeout finds and kills all of that; no signal blocked (a
        # blocked mask survives exec).
        proc = subprocess.Popen(
            [path], env=env, stdin=subprocess.DEVNULL,
            stdout=output.write_end, stderr=output.write_end,
            close_fds=True, start_new_session=True,
            preexec_fn=_prepare_hook)
    except OSError as e:
        if output is not None:
            output.close()
        log.error("hook %s (generation %s): not started: %s", path,
                  env["VMGENID_GENERATION"], e)
        return HookResult(path, f"not started: {e}")
    output.started()
    pidfd = os.pidfd_open(proc.pid)
    log.debug("hook %s started (pid %d)", path, proc.pid)
    timed_out = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            fds = [pidfd] + ([output.fd] if output.fd is not None else [])
            left = None if timed_out else max(0.0,
                                              deadline - time.monotonic())
            ready = select.select(fds, [], [], left)[0]
            if output.fd is not None and output.fd in ready:
                output.read()
            if pidfd in ready:
                break
            if not ready and not timed_out:
                log.warning("hook %s (generation %s): still running after "
                            "%gs: killed", path, env["VMGENID_GENERATION"],
                            timeout)
                timed_out = True
                kill_tree(proc.pid)
    except BaseException:
        kill_tree(proc.pid)
        raise
    finally:
        code = proc.wait()
        os.close(pidfd)
        output.close()
    if timed_out:
        result = "killed at timeout"
    elif code < 0:
        result = f"killed by signal {-code}"
    else:
        result = f"exit {code}"
    # A failure at error priority: `journalctl -p err` shows it.
    log.log(logging.INFO if result == "exit 0" else logging.ERROR,
            "hook %s (generation %s): %s", path, env["VMGENID_GENERATION"],
            result)
    return HookResult(path, result)


def run_hooks(folder: str, generation: Optional[int],
              previous: Optional[int], timeout: float, env: dict,
              trust: "Trust" = None) -> list[HookResult]:
    """One run: every hook of folder in name order, for generation (None:
    unknown), each to its end.  A folder that cannot be listed is an
    error (one result), not "no hooks"."""
    trust = ROOT if trust is None else trust
    try:
        hooks = list_hooks(folder, trust)
    except OSError as e:
        log.error("hooks for generation %s not run: cannot list %s: %s",
                  generation, folder, e.strerror)
        return [HookResult(folder, f"not listed: {e.strerror}")]
    log.info("hooks: %d to run for generation %s", len(hooks), generation)
    env = dict(os.environ, **env,
               VMGENID_GENERATION="" if generation is None
               else str(generation),
               VMGENID_PREVIOUS="" if previous is None else str(previous))
    return [run_hook(hook, env, timeout) for hook in hooks]


class State:
    """What the hooks last ran for, kept in a file (write + rename) so a
    restart of this program knows: {"done_for": N, "results": [...]}.
    Under /run: a new boot starts with none (and the counter at 0)."""

    def __init__(self, path: str):
        self.path = path
        self.done_for: Optional[int] = None
        self.results: list[HookResult] = []

    def load(self) -> Optional[int]:
        """done_for from the file; None if there is none (or it cannot be
        read: then said, and taken as none)."""
        try:
            with open(self.path) as f:
                saved = json.load(f)
            self.done_for = saved["done_for"]
            if self.done_for is not None and not isinstance(self.done_for,
                                                            int):
                raise ValueError("done_for is not a number")
        except FileNotFoundError:
            self.done_for = None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("cannot read %s (%s): taken as no run yet",
                        self.path, e)
            self.done_for = None
        return self.done_for

    def save(self, done_for: Optional[int],
             results: list[HookResult]) -> None:
        self.done_for, self.results = done_for, results
        text = json.dumps({"done_for": done_for, "pid": os.getpid(),
                           "results": [{"hook": r.name, "result": r.result}
                                       for r in results]}) + "\n"
        try:
            folder = os.path.dirname(self.path) or "."
            safefiles.private_folder(folder)
            fd, tmp = safefiles.create_exclusive(self.path, STATE_MODE)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                os.rename(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except (OSError, ValueError) as e:
            # The hooks ran: the file only saves a run after a restart.
            log.error("cannot write %s: %s", self.path, e)


class Runner:
    """The watcher: wait for a change, run the hooks, acknowledge."""

    def __init__(self, options, trust: "Trust" = None):
        self.options = options
        self.trust = ROOT if trust is None else trust
        self.state = State(options.state)
        # Where the hooks' `vmgenid` finds the device we watch.
        self.env = {"VMGENID_DEVICE": options.device,
                    "VMGENID_PAGE": options.page}

    def run(self, generation: Optional[int]) -> None:
        results = run_hooks(self.options.hooks_dir, generation,
                            self.state.done_for, self.options.hook_timeout,
                            self.env, self.trust)
        self.state.save(generation, results)

    def serve(self) -> int:
        self.state.load()
        watcher = self._open()
        with watcher:
            current = watcher.value()
            log.info("watching %s at generation %s, hooks in %s",
                     self.options.device, current, self.options.hooks_dir)
            if self.state.done_for is None:
                # The first start of this boot: nothing to catch up on.
                self.state.save(current, [])
            elif current != self.state.done_for:
                log.info("generation %s -> %s while not watching",
                         self.state.done_for, current)
                self.run(current)
            while True:
                generation = watcher.wait()
                if watcher.reopened:
                    log.info("%s reopened (the daemon restarted) at "
                             "generation %s", self.options.device,
                             generation)
                    if generation is not None \
                            and generation == self.state.done_for:
                        continue    # the daemon missed no change
                self.run(generation)
                if not watcher.ack(generation):
                    log.debug("generation moved on from %s during the run",
                              generation)

    def _open(self) -> vmgenid.Watcher:
        device, page = self.options.device, self.options.page
        try:
            return vmgenid.open(device, page)
        except vmgenid.NoDevice:
            log.info("no %s yet: waiting for it", device)
        return vmgenid.open(device, page, wait_for_node=True)


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
    """In the hook's process, before exec (the cffi shim's prctl: no
    ctypes)."""
    from .._cuse import ffi, lib
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if lib.prctl(lib.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ffi.errno
        raise OSError(err, f"PR_SET_CHILD_SUBREAPER: {os.strerror(err)}")


# -- the program -------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(
        prog="cuse-vmgenid-hooks",
        description="Run the executables of a folder on each change of "
                    "/dev/vmgenid's generation, then acknowledge it.")
    p.add_argument("--hooks-dir", type=path, default=HOOKS_DIR,
                   metavar="DIR",
                   help="executables run on each change, in name order; "
                        "missing = no hooks (default: %(default)s)")
    p.add_argument("--hook-timeout", type=HOOK_TIMEOUT, default=60.0,
                   metavar="SECONDS",
                   help=with_span("seconds a hook may run before it is "
                                  "killed", HOOK_TIMEOUT)
                   + " (default: %(default)g)")
    p.add_argument("--device", type=path, default=vmgenid.DEVICE,
                   help="the device (default: %(default)s)")
    p.add_argument("--page", type=path, default=vmgenid.PAGE,
                   help="the counter page (default: %(default)s)")
    p.add_argument("--state", type=path, default=STATE,
                   help="the generation the hooks last ran for, and how "
                        "each ended (default: %(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {__version__}")
    return p.parse_args(argv)


class _Stop(Exception):
    """SIGTERM or SIGINT: a hook still running is killed, then we exit."""


def _stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def _reload(signum, frame):
    log.info("SIGHUP: nothing to reload (the hooks folder is listed "
             "again at every run)")


def main(argv=None) -> int:
    options = parse_args(argv)
    log_to_stderr(LOG_FORMAT, options.log_level)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    signal.signal(signal.SIGHUP, _reload)
    try:
        return Runner(options).serve()
    except _Stop as e:
        log.info("stopping (%s)", e)
        return 0
    except OSError as e:
        log.error("fatal: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
