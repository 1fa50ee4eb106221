# SPDX-License-Identifier: MIT
"""The page is the daemon's output, never its input beyond the restart rule
(issue 20, items 5 and 6; docs/interface.rst, "The restart rule" and "The
page").  As root, as an administrator would: a page overwritten in place is
repaired from the state file at the restart, unless it is ahead of it (a
value clients may have seen: resumed above); a page replaced by `mv` is
put back at its path after the next bump, for every program that maps it
later, while those that mapped the old one keep seeing changes."""

import mmap
import os
import shutil
import struct
import subprocess
import tempfile
import time

import pytest

from .daemon_process import DaemonProcess
from .device import bump, force_min, open_device, page_counter
from .processes import HANG, NOBODY
from .test_daemon_lifecycle import restart, saved_state, wait_log
from .test_page_link import mapped_counter
from .test_state_leftovers import prepared
from .test_vmclock_link import reading
from .tool_run import start_daemon, vmgenid


def overwrite_in_place(path: str, data: bytes) -> None:
    """Root's write over the page: the same file, other bytes."""
    inode = os.stat(path).st_ino
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    assert os.stat(path).st_ino == inode


def stopped_at(daemon_factory, bumps: int):
    """A daemon that bumped @bumps times, then stopped (SIGTERM)."""
    first = daemon_factory()
    for n in range(1, bumps + 1):
        assert bump() == n
    assert first.stop() == 0 and first.wait_node_gone()
    assert saved_state(first)["counter"] == bumps
    return first


def test_a_page_of_0xff_bytes_is_repaired_from_the_state_file(
        daemon_factory):
    first = stopped_at(daemon_factory, 2)
    overwrite_in_place(first.page, b"\xff" * 4096)
    second = restart(daemon_factory, 2)
    wait_log(second, "held 4294967295, which the state file does not back")
    assert "resuming at 2 (the state file's)" in second.log()
    # --source none: the restart is one change, from the state file's 2.
    assert page_counter(second) == 3
    assert saved_state(second)["counter"] == 3
    assert bump() == 4
    assert page_counter(second) == 4
    assert saved_state(second)["counter"] == 4


def test_a_page_behind_the_state_file_is_repaired(daemon_factory):
    first = stopped_at(daemon_factory, 5)
    overwrite_in_place(first.page, struct.pack("=I", 2))
    second = restart(daemon_factory, 2)
    wait_log(second, "held 2, which the state file does not back")
    warning = [line for line in second.log().splitlines()
               if "does not back" in line]
    assert len(warning) == 1 and "WARNING" in warning[0], warning
    assert "resuming at 5 (the state file's)" in warning[0]
    assert page_counter(second) == 6        # 5, and the restart's change


def test_a_page_root_wrote_ahead_of_the_state_file_is_resumed_above(
        daemon_factory):
    """The daemon cannot tell root's write from its own failed commit
    (below): either way clients may have seen the value."""
    first = stopped_at(daemon_factory, 2)
    overwrite_in_place(first.page, struct.pack("=I", 5))
    second = restart(daemon_factory, 2)
    wait_log(second, "holds 5, ahead of the state file's 2")
    assert page_counter(second) == 6        # 5, and the restart's change


def block_prepared(folder) -> None:
    """Root puts a folder of its own at the name of the file the next
    commit of the state file is renamed from (a restore of the daemon's
    folder): that commit fails (logged; a file or a link there would be
    removed and the commit made again)."""
    for name in prepared(folder, 1):
        os.unlink(os.path.join(folder, name))
        os.mkdir(os.path.join(folder, name))


def test_a_page_ahead_of_the_state_file_is_never_resumed_below(
        daemon_factory, tmp_path):
    """Root puts a folder of its own at the name of the temporary file
    the next commit of the state file is renamed from (a restore of the
    daemon's folder), so that commit fails.  The daemon publishes anyway
    (a missed wake-up is worse; it logs the error) and is killed before a
    commit succeeds.  Clients saw the page's value: a restarted daemon
    must not serve it again for another world, so it resumes above it
    (one change), not from the older state file."""
    first = daemon_factory()
    assert bump() == 1
    block_prepared(tmp_path)
    assert bump() == 2
    wait_log(first, f"cannot write {first.state}")
    assert saved_state(first)["counter"] == 1          # behind the page
    assert page_counter(first) == 2
    first.kill()
    assert first.wait_node_gone()

    second = restart(daemon_factory, 2)
    assert page_counter(second) == 3, second.log()
    assert saved_state(second)["counter"] == 3
    assert bump() == 4


def test_past_0x7fffffff_a_page_ahead_is_never_resumed_below(
        daemon_factory, tmp_path):
    """Root's FORCE_GEN_UPDATE_MIN took the counter to 0x7fffffff and on
    past it; then a commit fails and the daemon is killed.  Clients saw
    0x80000001: the restart resumes from it, not from the state file's
    0x80000000 (whose one change would publish 0x80000001 again)."""
    first = daemon_factory()
    fd = open_device()
    try:
        assert force_min(fd, 0x7FFFFFFF) == 0
    finally:
        os.close(fd)
    assert bump() == 0x80000000
    block_prepared(tmp_path)
    assert bump() == 0x80000001
    wait_log(first, f"cannot write {first.state}")
    assert saved_state(first)["counter"] == 0x80000000
    first.kill()
    assert first.wait_node_gone()

    second = restart(daemon_factory, 2)
    assert page_counter(second) == 0x80000002, second.log()


@pytest.fixture
def run_folder():
    """A daemon folder as /run/vmgenid is: root's, mode 0755, so that
    clients (and nobody) reach the page in it."""
    folder = tempfile.mkdtemp(prefix="vmgenid-page.", dir="/run")
    os.chmod(folder, 0o755)
    started = []
    yield folder, started
    for d in started:
        assert d.stop() == 0
    shutil.rmtree(folder)


def test_a_page_nobody_owns_is_replaced_and_never_read(run_folder):
    """A careless root leaves a page file in the daemon's folder that is
    nobody's (a copy restored with its owner).  A restart may resume from
    a page ahead of the state file, so nobody could move the counter by
    writing it: the daemon replaces such a file at start, unread."""
    folder, started = run_folder
    page = os.path.join(folder, "page")
    with open(page, "wb") as f:
        f.write(bytes(4096))
    os.chown(page, 65534, 65534)
    os.chmod(page, 0o644)
    first = DaemonProcess(folder).start()
    started.append(first)
    wait_log(first, f"{page} is owned by uid 65534")
    st = os.stat(page)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o444)
    counter = page_counter(first)
    # The page at its path is the daemon's: nobody cannot write it.
    tries = subprocess.run(
        [*NOBODY, "/usr/bin/python3", "-c",
         "import os, struct, sys\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
         "os.pwrite(fd, struct.pack('=I', 1000), 0)\n", page],
        capture_output=True, text=True, timeout=HANG)
    assert tries.returncode != 0 and "PermissionError" in tries.stderr
    assert first.stop() == 0 and first.wait_node_gone()

    second = DaemonProcess(folder)
    started.append(second)
    second.start()
    wait_log(second, "cuse-vmgenid: INFO serving", 2)
    # The restart's one change (source none), from the state file's.
    assert page_counter(second) == counter + 1, second.log()


def wait_counter(path: str, counter: int, read=mapped_counter) -> None:
    deadline = time.monotonic() + HANG
    while read(path) != counter:
        assert time.monotonic() < deadline, \
            f"{path} never held {counter} (holds {read(path)})"
        time.sleep(0.05)


def vmclock_counter(path: str) -> int:
    return int(reading(path)["vm_generation_counter"])


def test_a_page_replaced_by_mv_is_put_back_after_the_next_bump(
        daemon_factory, tmp_path):
    link, vmclock_link = str(tmp_path / "sysgenid"), str(tmp_path / "vmc")
    daemon = start_daemon(daemon_factory, tmp_path, "--page-link", link,
                          "--vmclock-link", vmclock_link)
    vmclock = os.readlink(vmclock_link)
    assert vmgenid(daemon, "bump").returncode == 0
    with open(daemon.page, "rb") as f:     # a program that mapped it first
        early = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    for path in (daemon.page, vmclock):
        new = path + ".admin"
        with open(new, "wb") as f:
            f.write(bytes(4096))
        os.rename(new, path)
    assert mapped_counter(link) == 0

    done = vmgenid(daemon, "bump")
    assert done.returncode == 0, done.stderr
    wait_counter(daemon.page, 2)
    wait_counter(vmclock_link, 2, vmclock_counter)
    wait_log(daemon, f"{daemon.page} was replaced by another file")
    wait_log(daemon, f"{vmclock} was replaced by another file")
    assert struct.unpack_from("=I", early)[0] == 2
    # Programs that map the path (or its link) now see every later bump.
    with open(link, "rb") as f:
        late = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    assert vmgenid(daemon, "bump").returncode == 0
    assert struct.unpack_from("=I", late)[0] == 3
    assert struct.unpack_from("=I", early)[0] == 3
    assert vmclock_counter(vmclock_link) == 3
    # One line each: the next bump finds everything in place.
    assert daemon.log().count("was replaced by another file") == 2
    assert not [n for n in os.listdir(os.path.dirname(daemon.page))
                if n.startswith((".page.", ".vmclock."))]    # no temp left
    early.close()
    late.close()


def test_a_removed_link_is_made_again_after_the_next_bump(daemon_factory,
                                                         tmp_path):
    link = str(tmp_path / "sysgenid")
    daemon = start_daemon(daemon_factory, tmp_path, "--page-link", link)
    os.unlink(link)
    assert vmgenid(daemon, "bump").returncode == 0
    wait_log(daemon, f"{link} no longer led to {daemon.page}: the link is "
             "made again")
    assert os.readlink(link) == daemon.page
    assert mapped_counter(link) == 1
