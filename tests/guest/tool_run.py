# SPDX-License-Identifier: MIT
"""The `vmgenid` command line and the daemon options it relies on, for the
guest tests of the CLI, the Python client and hooks.d.

`vmgenid` runs as `python -m vmgenid` from this checkout (the
console script is the same function), pointed at the test daemon's page
and status file through VMGENID_PAGE and VMGENID_STATUS.
"""

import json
import os
import subprocess
import sys
import time

from .device import REPO
from .processes import HANG, Child

VMGENID = (sys.executable, "-m", "vmgenid")


def start_daemon(daemon_factory, tmp_path, *extra: str):
    """A daemon with its status file in tmp_path."""
    d = daemon_factory("--status", str(tmp_path / "status.json"), *extra)
    d.status = str(tmp_path / "status.json")
    return d


def tool_env(daemon) -> dict:
    return dict(os.environ, VMGENID_PAGE=daemon.page,
                VMGENID_STATUS=daemon.status)


def vmgenid(daemon, *args, prefix: tuple = ()) -> subprocess.CompletedProcess:
    """`vmgenid ARGS` run to completion."""
    return subprocess.run([*prefix, *VMGENID, *map(str, args)], cwd=REPO,
                          env=tool_env(daemon), capture_output=True,
                          text=True, timeout=HANG)


def start_vmgenid(daemon, *args, pass_fds=()) -> Child:
    """`vmgenid ARGS` as a Child, read line by line."""
    return Child([*VMGENID, *args], env=tool_env(daemon), pass_fds=pass_fds)


def read_status(daemon) -> dict:
    with open(daemon.status) as f:
        return json.load(f)


def wait_status(daemon, check, what: str) -> dict:
    """The status file once check(status) holds (the daemon writes it
    at most every 100 ms, after the change): hang rescue only."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            status = read_status(daemon)
            if check(status):
                return status
        except FileNotFoundError:
            status = None
        assert time.monotonic() < deadline, f"status never {what}: {status}"
        time.sleep(0.05)
