# SPDX-License-Identifier: MIT
"""The shell loop, the C and the Python examples of README and
docs/client.rst, run as written.

Each is taken out of its document as the reader sees it (tests/examples.py
names them); the man page's and --help's copies of the shell loop are the
same text (tests/host/test_documented_snippets.py).  `reseed`, which the
examples leave to the reader, prints what it was called with.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from ..examples import (CLIENT_PYTHON, MAN4_C, README_C, README_PYTHON,
                        README_SHELL_LOOP)
from .device import NODE, REPO, force_from_elsewhere, outdated_now
from .processes import HANG, NOBODY, SYS_READ, Child, wait_blocked
from .tool_run import start_daemon, tool_env, wait_status


def example_env(daemon) -> dict:
    """The tool's environment, with `vmgenid` on PATH running this
    checkout's code."""
    env = tool_env(daemon)
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    env["PYTHONPATH"] = REPO
    return env


def watchers(served, count: int) -> None:
    wait_status(served, lambda s: s["watchers"] == count,
                f"at {count} watchers")


def idle(served) -> None:
    """Every watcher acknowledged (the example acked and waits again)."""
    wait_status(served, lambda s: s["outdated"] == 0, "without outdated")


def test_shell_loop_reseeds_at_a_daemon_restart_and_sees_later_changes(
        daemon_factory, tmp_path):
    served = start_daemon(daemon_factory, tmp_path)
    script = 'reseed() { echo "reseed $1"; }\n' + README_SHELL_LOOP.text()
    with Child(["/bin/sh", "-c", script], env=example_env(served)) as loop:
        watchers(served, 1)             # fd 3 is open
        force_from_elsewhere()
        assert loop.line() == "reseed 1"
        assert loop.line() == "1"       # `ack --fd` says what it acked
        idle(served)
        served.kill()
        assert served.wait_node_gone()
        served.start()      # same page and state; --source none bumps to 2
        # `wait --fd` says the daemon went away (exit 6) and the shell may
        # say it cannot open the node yet: the loop reopens, then reseeds.
        seen = loop.lines_until("reseed restart")
        assert "reopen it" in seen[0], seen
        # Reopened on the daemon's node, never on a file made in its place.
        assert stat.S_ISCHR(os.stat(NODE).st_mode)
        watchers(served, 1)             # the reopened fd 3
        force_from_elsewhere()
        assert loop.line() == "reseed 3"
        assert loop.line() == "3"
        idle(served)
        assert loop.proc.poll() is None


@pytest.mark.parametrize("example", [README_PYTHON, CLIENT_PYTHON],
                         ids=lambda e: e.document)
def test_python_example_reseeds_on_each_change(daemon_factory, tmp_path,
                                               example):
    served = start_daemon(daemon_factory, tmp_path)
    program = "def reseed():\n    print('reseed', flush=True)\n\n" + \
        example.text()
    with Child([sys.executable, "-c", program],
               env=example_env(served)) as run:
        watchers(served, 1)
        for _ in range(2):
            force_from_elsewhere()
            assert run.line() == "reseed"
            idle(served)        # acked when the loop asked for the next


def test_python_example_without_a_daemon_fails_at_once():
    assert not os.path.exists(NODE), "a daemon serves /dev/vmgenid"
    program = "def reseed():\n    pass\n\n" + README_PYTHON.text()
    with Child([sys.executable, "-c", program]) as example:
        # HANG: a rescue only; the old client waited for the node forever.
        assert example.wait(HANG) == 1
        assert "vmgenid.NoDevice: [Errno 2] no /dev/vmgenid " \
            "(is cuse-vmgenid running?)" in example.output()


# README's C lines inside a program: `reseed()` says it ran, then the
# program shows what it read and keeps its watcher open until told.
C_PROGRAM = """\
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static void reseed(void)
{
\tputs("reseed");
\tfflush(stdout);
}

int main(void)
{
%s
\tprintf("acknowledged %%u\\n", gen);
\tfflush(stdout);
\tgetchar();
\treturn 0;
}
"""


@pytest.mark.parametrize("example", [README_C, MAN4_C],
                         ids=lambda e: e.document)
def test_c_example_blocks_until_a_change_and_acknowledges(daemon_factory,
                                                          tmp_path, example):
    """As an ordinary user: read() blocks until the change, the program
    reseeds, and its write() acknowledges (nobody is outdated while it
    still holds the watcher); README's lines and vmgenid(4)'s."""
    served = start_daemon(daemon_factory, tmp_path)
    build = tempfile.mkdtemp(prefix="c-example-")
    try:
        os.chmod(build, 0o755)
        source = os.path.join(build, "example.c")
        with open(source, "w") as f:
            f.write(C_PROGRAM % "".join(
                "\t" + line if line else line
                for line in example.text().splitlines(True)))
        binary = os.path.join(build, "example")
        subprocess.run(["cc", "-Wall", "-Werror", "-o", binary, source],
                       check=True, timeout=HANG)
        with Child([*NOBODY, binary], stdin=True) as program:
            wait_blocked(program, {SYS_READ})
            watchers(served, 1)
            force_from_elsewhere()
            assert program.line() == "reseed"
            assert program.line() == "acknowledged 1"
            assert outdated_now() == 0      # its watcher acknowledged
            assert program.finish() == 0
    finally:
        shutil.rmtree(build)
