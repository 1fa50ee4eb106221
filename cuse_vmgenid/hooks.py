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
not executable.
"""

import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

SKIPPED_MARKS = (".dpkg-", ".ucf-")


@dataclass
class HookResult:
    name: str
    result: str          # "exit 0", "exit 3", "killed at timeout", ...

    @property
    def ok(self) -> bool:
        return self.result == "exit 0"


def list_hooks(folder: str) -> list[str]:
    """The executables of folder in name order; [] if it does not exist."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("cannot list hooks in %s: %s", folder, e)
        return []
    found = []
    for name in names:
        if (name.startswith(".") or name.endswith("~")
                or any(mark in name for mark in SKIPPED_MARKS)):
            continue
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found.append(path)
    return found


class HookRunner:
    def __init__(self, folder: str, timeout: float, env: dict,
                 start_generation: int,
                 finished: Callable[[int], None]):
        """finished(generation) runs when a run for generation ended."""
        self.folder = folder
        self.timeout = timeout
        self._env = env                  # VMGENID_* paths for the hooks
        self._finished = finished
        self.done_for = start_generation  # the last generation run for
        self.wanted: Optional[int] = None  # the newest change not run yet
        self.running_for: Optional[int] = None
        self._queue: list[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._pidfd: Optional[int] = None
        self._name: Optional[str] = None
        self._deadline: Optional[float] = None
        self._timed_out = False
        self.results: list[HookResult] = []   # of the current or last run

    # -- what the loop asks ---------------------------------------------

    def fd(self) -> Optional[int]:
        """The running hook's pidfd: readable once it has exited."""
        return self._pidfd

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
                self._queue = list_hooks(self.folder)
                self.results = []
                log.info("hooks: %d to run for generation %d",
                         len(self._queue), self.running_for)
            else:
                return

    def exited(self, now: float) -> None:
        """The pidfd is readable: reap the hook, log how it ended, go on."""
        proc = self._proc
        code = proc.wait()
        if self._timed_out:
            result = "killed at timeout"
        elif code < 0:
            result = f"killed by signal {-code}"
        else:
            result = f"exit {code}"
        self.results.append(HookResult(self._name, result))
        level = logging.INFO if result == "exit 0" else logging.WARNING
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
            self._proc = self._pidfd = None

    # -- internals ----------------------------------------------------------

    def _start(self, path: str, now: float) -> None:
        env = dict(os.environ, **self._env,
                   VMGENID_GENERATION=str(self.running_for),
                   VMGENID_PREVIOUS=str(self.done_for))
        try:
            # Its own process group, so a timeout kills what it started too;
            # SIGUSR1 unblocked: the daemon blocks it for its signalfd, and
            # a blocked mask survives exec.
            proc = subprocess.Popen(
                [path], env=env, stdin=subprocess.DEVNULL, close_fds=True,
                start_new_session=True, preexec_fn=_unblock_signals)
        except OSError as e:
            self.results.append(HookResult(path, f"not started: {e}"))
            log.error("hook %s (generation %d): not started: %s", path,
                      self.running_for, e)
            return
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
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
