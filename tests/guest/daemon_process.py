# SPDX-License-Identifier: MIT
"""Start and stop the daemon from this checkout, inside the guest."""

import os
import signal
import stat
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NODE = "/dev/vmgenid"


def read_log(path: str) -> str:
    """A process's log so far ('' before it has one)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class DaemonProcess:
    def __init__(self, workdir: str, *extra_args: str):
        self.workdir = workdir
        self.page = os.path.join(workdir, "page")
        self.state = os.path.join(workdir, "state")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.args = [sys.executable, "-m", "cuse_vmgenid",
                     "--source", "none", "--page", self.page,
                     "--state", self.state, "--log-level", "debug",
                     *extra_args]
        self.proc = None
        self._log_start = 0

    def start(self, timeout: float = 120) -> "DaemonProcess":
        """The timeout only rescues a hang: emulation makes starts slow."""
        log = open(self.log_path, "ab")
        self._log_start = log.tell()  # a restart appends to the same log
        self.proc = subprocess.Popen(self.args, cwd=REPO, stdout=log,
                                     stderr=log, close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n"
                                   + self.log())
            if self.serving():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("daemon not serving in time:\n" + self.log())

    def serving(self) -> bool:
        """The node exists and its mode was set (init_done ran)."""
        try:
            st = os.stat(NODE)
        except FileNotFoundError:
            return False
        return (stat.S_ISCHR(st.st_mode)
                and "serving" in self.log()[self._log_start:])

    def log(self) -> str:
        return read_log(self.log_path)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd does; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def wait_node_gone(self, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not os.path.exists(NODE):
                return True
            time.sleep(0.02)
        return False
