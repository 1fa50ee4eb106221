# SPDX-License-Identifier: MIT
"""Guest fixtures: a fresh daemon from this checkout for every test.

Each test gets its own page and state file (so the counter starts at 0, as
at a new boot) and leaves the daemon to the fixture, which stops it with
SIGTERM and checks that it exited cleanly and took the node with it.
"""

import os

import pytest

from cuse_vmgenid.sources import fwcfg

from .daemon_process import DaemonProcess
from .device import write_guid
from .processes import Child


def pytest_configure(config):
    if not os.path.exists("/dev/cuse"):
        pytest.exit("tests/guest runs inside the QEMU guest, where /dev/cuse "
                    "exists: use `make test` (or python -m tests.harness)",
                    returncode=4)


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def start(*extra_args: str) -> DaemonProcess:
        d = DaemonProcess(str(tmp_path), *extra_args).start()
        started.append(d)
        return d

    yield start
    # Every daemon stopped before any complaint: one left serving would
    # fail the next test too.
    problems = []
    for d in started:
        if d.proc.poll() is None:
            rc = d.stop()
            if rc != 0:
                problems.append(f"daemon exited {rc} on SIGTERM")
            if not d.wait_node_gone():
                problems.append("node still there after SIGTERM")
        if "Traceback" in d.log():
            problems.append("a traceback in the log")
    assert not problems, f"{problems}:\n{started[-1].log()}"


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory("--max-watchers-per-uid", "8")


@pytest.fixture
def spawn(daemon):
    """Start helper processes (Child); each is killed and reaped after the
    test, before the daemon fixture stops the daemon."""
    children = []

    def start(*argv, pass_fds=()) -> Child:
        child = Child(argv, pass_fds=pass_fds)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


@pytest.fixture
def guid_put_back():
    """The GUID QEMU gave, put back after the test (test_guid_source.py
    compares memory with fw_cfg's copy)."""
    with fwcfg.mapped_guid() as source:
        original = source.read_bytes()
    yield
    write_guid(original)
