# SPDX-License-Identifier: MIT
"""docs/interface.rst, "Privacy", as the users who
would look: the GUID is in no log line and in nothing a user can read; the
world-readable status names no process; `vmgenid status` shows a user its
own outdated watchers only (and only those /proc shows it, hidepid=2
too); the per-uid cap counts a user namespace's watchers against its
owner.

The status goes to a folder under /run that everyone may enter (the
tests' tmp_path is root's, 0700): what nobody can read there is what
nobody could read in /run/vmgenid.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from vmgenid import tool

from cuse_vmgenid.sources import fwcfg

from .device import (NODE, REPO, force_from_elsewhere, notify, open_device,
                     write_guid)
from .processes import HANG, NOBODY, Child
from .tool_run import VMGENID, read_status, wait_status

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                       r"[0-9a-f]{12}", re.IGNORECASE)
SECOND_USER = ("setpriv", "--reuid=1001", "--regid=1001", "--clear-groups")


@pytest.fixture
def public_dir():
    """A folder under /run others may read.  Request it before
    daemon_factory: fixtures are torn down in the reverse order, so the
    daemon writing status files into it is stopped before it is removed."""
    folder = tempfile.mkdtemp(prefix="vmgenid-test-", dir="/run")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


def start(daemon_factory, public_dir, tmp_path, *extra):
    status = os.path.join(public_dir, "status.json")
    d = daemon_factory("--status", status, *extra)
    d.status = status
    return d


def run_as(prefix: tuple, *argv, env: dict | None = None,
           ok: tuple = (0,)) -> str:
    done = subprocess.run([*prefix, *map(str, argv)], cwd=REPO,
                          capture_output=True, text=True, timeout=HANG,
                          env=env)
    assert done.returncode in ok, (prefix, argv, done.stdout, done.stderr)
    return done.stdout


def tool_as(prefix: tuple, daemon, *args) -> str:
    # The daemons here serve --source none: `status` says so, exit 7.
    return run_as(prefix, *VMGENID, *args,
                  env=dict(os.environ, VMGENID_STATUS=daemon.status,
                           VMGENID_PAGE=daemon.page),
                  ok=(0, tool.EXIT_UNSEEN))


def hold_watcher(prefix: tuple = ()) -> Child:
    """`sleep` holding a watcher it opened itself, never acknowledging."""
    holder = Child([*prefix, "/bin/sh", "-c",
                    f"exec 3<>{NODE} && echo open && exec sleep 600"])
    assert holder.line() == "open"
    return holder


# -- the GUID -----------------------------------------------------------------

def test_no_guid_in_the_log_the_status_or_vmgenid_status(public_dir,
                                                        daemon_factory,
                                                        tmp_path,
                                                        guid_put_back):
    with fwcfg.mapped_guid() as source:
        first = source.read()
        d = start(daemon_factory, public_dir, tmp_path, "--source", "auto")
        new = uuid.uuid4()
        write_guid(new.bytes_le)
        second = source.read()
    # Where the kernel tells of a change the GUID is looked at only then
    # (the hypervisor notifies; here nothing did): a hint, as acpid's.
    fd = open_device()
    try:
        notify(fd)
    finally:
        os.close(fd)
    assert second == str(new) != first
    status = wait_status(d, lambda s: s["counter"] == 1, "at 1 (new GUID)")
    assert status["last_change"]["reason"] == "hardware"
    assert "GUID changed (seen on" in d.log()
    force_from_elsewhere()
    status = wait_status(d, lambda s: s["counter"] == 2, "at 2 (FORCE)")
    assert status["last_change"]["reason"] == "forced"

    seen = {"log": d.log(),
            "status file": run_as(NOBODY, "cat", d.status),
            "vmgenid status": tool_as(NOBODY, d, "status"),
            "vmgenid status --json": tool_as(NOBODY, d, "status", "--json")}
    for what, text in seen.items():
        for guid in (first, second):
            assert guid not in text.lower(), (what, text)
        assert not UUID_TEXT.search(text), (what, text)
    # Only the state file keeps it, for root alone.
    with open(d.state) as f:
        assert second in f.read()
    assert os.stat(d.state).st_mode & 0o777 == 0o600
    assert d.stop() == 0        # before the GUID is put back


# -- the status ---------------------------------------------------------------

def own_watchers(prefix: tuple, daemon) -> list:
    status = json.loads(tool_as(prefix, daemon, "status", "--json"))
    return sorted((w["pid"], w["uid"], w["comm"])
                  for w in status["outdated_watchers"])


def test_each_user_sees_its_own_outdated_watchers_only(public_dir,
                                                      daemon_factory,
                                                      tmp_path):
    d = start(daemon_factory, public_dir, tmp_path)
    with hold_watcher() as root_w, hold_watcher(NOBODY) as nobody_w, \
            hold_watcher(SECOND_USER) as second_w:
        force_from_elsewhere()
        wait_status(d, lambda s: s["outdated"] == 3, "3 outdated")

        # The world-readable file: counts, classes, the daemon; no process.
        text = run_as(NOBODY, "cat", d.status)
        public = json.loads(text)
        assert public == read_status(d)
        assert "outdated_watchers" not in public
        assert "comm" not in text
        assert (public["watchers"], public["outdated"]) == (3, 3)
        assert public["last_change"]["reason"] == "forced"
        assert public["daemon_pid"] == d.proc.pid
        assert os.stat(d.status).st_mode & 0o777 == 0o644

        assert own_watchers(NOBODY, d) == [(nobody_w.pid, 65534, "sleep")]
        assert own_watchers(SECOND_USER, d) == [(second_w.pid, 1001,
                                                 "sleep")]
        assert own_watchers((), d) == sorted([
            (root_w.pid, 0, "sleep"), (nobody_w.pid, 65534, "sleep"),
            (second_w.pid, 1001, "sleep")])

        human = tool_as(NOBODY, d, "status").splitlines()
        assert "watchers 3, outdated 3" in human
        assert "  (listed: your own outdated watchers only)" in human
        assert [line for line in human if "outdated: pid" in line] == [
            f"  outdated: pid {nobody_w.pid} (sleep) uid 65534, "
            "acknowledged 0"]

        # Another user's list cannot be read, nor the folder listed.
        folder = os.path.join(public_dir, "watchers")
        for argv in (("cat", os.path.join(folder, "all.json")),
                     ("cat", os.path.join(folder, "0.json")),
                     ("cat", os.path.join(folder, "1001.json")),
                     ("ls", folder)):
            refused = subprocess.run([*NOBODY, *argv], capture_output=True,
                                     timeout=HANG)
            assert refused.returncode != 0, argv


def test_with_hidepid_2_a_user_still_sees_only_its_own(public_dir,
                                                       daemon_factory,
                                                       tmp_path):
    """/proc mounted hidepid=2 (in a mount namespace of the test's own):
    nobody's `vmgenid status` lists its own watcher and nothing of root's
    or the second user's."""
    d = start(daemon_factory, public_dir, tmp_path)
    with hold_watcher() as root_w, hold_watcher(NOBODY) as nobody_w, \
            hold_watcher(SECOND_USER) as second_w:
        force_from_elsewhere()
        wait_status(d, lambda s: s["outdated"] == 3, "3 outdated")
        hidepid = ("unshare", "--mount", "--propagation", "private",
                   "/bin/sh", "-c",
                   'mount -t proc -o hidepid=2 proc /proc && exec "$@"',
                   "hidepid")
        seen = run_as((*hidepid, *NOBODY), "ls", "/proc")
        assert str(root_w.pid) not in seen.split()     # hidepid is on
        assert str(second_w.pid) not in seen.split()
        assert own_watchers((*hidepid, *NOBODY), d) == [
            (nobody_w.pid, 65534, "sleep")]
        text = tool_as((*hidepid, *NOBODY), d, "status")
        for pid in (root_w.pid, second_w.pid):
            assert f"pid {pid} " not in text


# -- the cap and user namespaces ----------------------------------------------

HOLD_IN_NAMESPACE = r"""
import ctypes, os, sys
uids, cap = int(sys.argv[1]), int(sys.argv[2])
CLONE_NEWUSER = 0x10000000              # os.unshare: Python 3.12 on
if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUSER) != 0:
    sys.exit(f"unshare: {os.strerror(ctypes.get_errno())}")
print("unshared", flush=True)
sys.stdin.readline()                    # our uid_map is written
counts = []
for uid in range(uids):
    r, w = os.pipe()
    if os.fork() == 0:                  # one process per mapped uid
        os.setresuid(uid, uid, uid)
        fds, err = [], 0
        try:
            while len(fds) <= cap:
                fds.append(os.open("/dev/vmgenid", os.O_RDWR))
        except OSError as e:
            err = e.errno
        os.write(w, b"%d %d\n" % (len(fds), err))
        os.read(0, 1)                   # hold them until stdin closes
        os._exit(0)
    os.close(w)
    counts.append(os.read(r, 64).decode().split())
print("opened", sum(int(n) for n, _ in counts),
      "errnos", sorted({int(e) for _, e in counts}), flush=True)
sys.stdin.read()
"""


def test_watchers_from_a_user_namespace_count_against_its_owner(daemon):
    """nobody, in a user namespace of its own with 4 uids mapped (what
    newuidmap does for a subordinate range from /etc/subuid; the guest
    has no newuidmap, so root writes the same map), opens as many
    watchers as it can from each: together, no more than the cap of 8."""
    uids, cap = 4, 8
    with Child([*NOBODY, sys.executable, "-c", HOLD_IN_NAMESPACE, uids, cap],
               stdin=True) as holder:
        assert holder.line() == "unshared", holder.output()
        ns = os.readlink(f"/proc/{holder.pid}/ns/user")
        assert ns != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{holder.pid}/uid_map", "w") as f:
            f.write(f"0 200000 {uids}\n")
        holder.send("mapped")
        line = holder.line()
        assert line == f"opened {cap} errnos [{errno.EDQUOT}]", \
            (line, daemon.log())
