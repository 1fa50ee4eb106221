# SPDX-License-Identifier: MIT
"""Guest-side helpers of the restore scenarios (device.py, demo.py,
latency.py): the daemon from this checkout with its log relayed to the
console, helper processes relayed with a prefix, and waits that make sure
a watcher is really blocked before the host saves the VM.

Every console line is written with one write(2) under a lock, so lines
from threads and processes never interleave: the host parses them.
"""

import errno
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

NODE = "/dev/vmgenid"
NATIVE = os.path.join(REPO, "native", "build")
PAGE = "/run/vmgenid/page"
STATE = "/run/vmgenid/state"
DAEMON_ARGS = [os.path.join(REPO, ".venv", "bin", "python"), "-m",
               "cuse_vmgenid", "--source", "auto", "--page", PAGE,
               "--state", STATE, "--log-level", "debug"]
SYSCALL_READ, SYSCALL_POLL, SYSCALL_PPOLL = 0, 7, 271   # x86_64

_say_lock = threading.Lock()


def say(*parts) -> None:
    """One console line, written at once."""
    line = " ".join(str(p) for p in parts) + "\n"
    with _say_lock:
        os.write(1, line.encode())


def native(name: str) -> str:
    return os.path.join(NATIVE, name)


class Relay:
    """A process whose output lines go to the console as "<PREFIX> line"
    (unless @quiet), and are kept for wait_line()."""

    def __init__(self, prefix: str, argv: list[str], quiet: bool = False,
                 **popen):
        self.prefix = prefix
        self.quiet = quiet
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True,
                                     errors="replace", **popen)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if not self.quiet:
                say(self.prefix, line)
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)     # end of output
            self.cond.notify_all()

    def wait_line(self, pattern: str, after: int = 0,
                  timeout: float = 120) -> int:
        """The index of the first line from @after matching @pattern;
        raises TimeoutError if none comes (or the output ends)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if self.lines[i] is None:
                        raise TimeoutError(f"{self.prefix}: output ended "
                                           f"without {pattern!r}")
                    if regex.search(self.lines[i]):
                        return i
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.prefix}: no {pattern!r} "
                                       f"within {timeout:g} s")
                self.cond.wait(remaining)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines
                       if line is not None and regex.search(line))

    @property
    def mark(self) -> int:
        """The index the next line will have (for wait_line(after=))."""
        with self.cond:
            return len(self.lines)

    def wait(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self.thread.join(timeout)
        return rc

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM if still running; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait(timeout)


class Daemon(Relay):
    """The daemon with --source auto on /run/vmgenid, its log on the
    console as "DAEMON <line>"."""

    def __init__(self, *extra: str, quiet: bool = False):
        super().__init__("DAEMON", DAEMON_ARGS + list(extra), quiet=quiet)

    @classmethod
    def start(cls, *extra: str, quiet: bool = False,
              timeout: float = 120) -> "Daemon":
        daemon = cls(*extra, quiet=quiet)
        daemon.wait_line(r"\bserving /dev/vmgenid\b", timeout=timeout)
        for _ in range(500):
            if os.path.exists(NODE):
                break
            time.sleep(0.02)
        say("DAEMON_PID", daemon.proc.pid)
        return daemon

    def terminate(self) -> int | None:
        rc = self.stop()
        say("DAEMON_EXIT", rc)
        return rc


def blocked_in(pid: int, syscalls: tuple[int, ...], tid: int | None = None,
               timeout: float = 60) -> bool:
    """Wait until process @pid (thread @tid) sleeps in one of @syscalls;
    then a moment more, for its request to reach the daemon."""
    path = f"/proc/{pid}/task/{tid or pid}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"{path}/syscall") as f:
                nr = f.read().split()[0]
            with open(f"{path}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if nr.isdigit() and int(nr) in syscalls and state == "S":
            time.sleep(0.3)
            return True
        time.sleep(0.05)
    return False


def page_counter() -> int:
    with open(PAGE, "rb") as f:
        return struct.unpack("=I", f.read(4))[0]


def errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def run_scenario(main) -> None:
    """Exit with main()'s status; 2 if something it waited for never came
    (a TimeoutError, said on the console as MISSING)."""
    try:
        sys.exit(main())
    except TimeoutError as e:
        say("MISSING", e)
        sys.exit(2)
