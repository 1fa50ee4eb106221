# SPDX-License-Identifier: MIT
"""Hostile users and careless admins (issue 12): no request, no /proc text,
no damaged or planted file ends the daemon or is followed.

Each test acts as the one who would cause the harm: `nobody` for requests
and process names, root (a careless admin) for the files in /run.
"""

import os
import stat
import subprocess
import sys

from .daemon_process import DaemonProcess
from .device import (NODE, force, force_from_elsewhere, native,
                     open_device, page_counter, read_counter, run_native,
                     unknown_ioctls_logged)
from .processes import (HANG, NOBODY, SYS_IOCTL, Child, wait_blocked,
                        wait_state)

U32_MAX = 0xFFFFFFFF
# nobody cannot run root's interpreter (under /root); the holder needs
# nothing but the standard library.
SYSTEM_PYTHON = "/usr/bin/python3"


def daemon_alive(daemon) -> None:
    assert daemon.proc.poll() is None, daemon.log()
    assert run_native("vmgenid-ioctl", "outdated").returncode == 0, \
        daemon.log()


# -- finding 1: WAIT_WATCHERS takes every u32 --------------------------------

def test_wait_watchers_any_u32_timeout_as_nobody(daemon):
    """0xffffffff ("forever"), 2^31 and more: the call waits, and an ack
    of the last outdated watcher answers it 0; the daemon lives."""
    outdated_fd = open_device()
    try:
        assert force(outdated_fd) == 0   # outdated_fd is outdated now
        for timeout in (U32_MAX, 1 << 31, (1 << 31) - 1, 1 << 32,
                        (1 << 64) - 1):
            waiter = Child([*NOBODY, native("vmgenid-ioctl"), "wait",
                            timeout])
            with waiter:
                wait_blocked(waiter, SYS_IOCTL)
                daemon_alive(daemon)
                counter = read_counter(outdated_fd)
                os.write(outdated_fd, counter.to_bytes(4, sys.byteorder))
                assert waiter.line() == \
                    "ioctl=VMGENID_WAIT_WATCHERS ret=0 errno=0", timeout
                force(outdated_fd)       # outdated again for the next one
    finally:
        os.close(outdated_fd)
    daemon_alive(daemon)


# -- finding 2: a process name that is not UTF-8 -----------------------------

HOLD_WITH_NAME = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[1])),
                        0, 0, 0)
fd = os.open("/dev/vmgenid", os.O_RDWR)
if sys.argv[2] == "force":
    import fcntl
    from vmgenid import ioctls
    print("force", fcntl.ioctl(fd, ioctls.FORCE_GEN_UPDATE), flush=True)
else:
    print("open", flush=True)
    sys.stdin.read()
"""

# Not UTF-8 at all, and a Cyrillic name the kernel cuts at 15 bytes,
# in the middle of a character.
BAD_NAMES = (b"\xff\xfe-vmgenid", "обновлятель".encode())


def test_watcher_with_bad_comm_then_change_as_nobody(daemon):
    holders = []
    try:
        for name in BAD_NAMES:
            holder = Child([*NOBODY, SYSTEM_PYTHON, "-c", HOLD_WITH_NAME,
                            name.hex(), "hold"], stdin=True)
            holders.append(holder)
            assert holder.line() == "open"
        before = page_counter(daemon)
        run_native("vmgenid-ioctl", "force")
        run_native("vmgenid-ioctl", "force")    # the status is written between
        assert page_counter(daemon) == before + 2
        daemon_alive(daemon)
    finally:
        for holder in holders:
            holder.kill()
    assert "codec" not in daemon.log()


def test_force_from_root_tool_with_bad_comm(daemon):
    for name in BAD_NAMES:
        before = page_counter(daemon)
        out = subprocess.run([sys.executable, "-c", HOLD_WITH_NAME,
                              name.hex(), "force"], capture_output=True,
                             text=True, timeout=HANG, cwd=REPO_PATH)
        assert out.stdout == "force 0\n", (out.stderr, daemon.log())
        assert page_counter(daemon) == before + 1
    daemon_alive(daemon)
    assert "\\xff\\xfe-vmgenid" in daemon.log()


REPO_PATH = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


# -- finding 5: a truncated page ---------------------------------------------

def test_truncated_page_is_repaired_at_the_next_bump(daemon):
    """A careless admin truncates the page while a client maps it: the next
    bump restores its size in place and the client sees the counter."""
    inode = os.stat(daemon.page).st_ino
    client = Child([native("vmgenid-map"), "-r", "-d", daemon.page, "-i"],
                   stdin=True)
    with client:
        assert client.line() == "map ok value=0"
        os.truncate(daemon.page, 0)
        run_native("vmgenid-ioctl", "force")
        daemon_alive(daemon)
        st = os.stat(daemon.page)
        assert (st.st_ino, st.st_size) == (inode, 4096)
        assert page_counter(daemon) == 1
        assert client.ask("v") == "value=1"
        os.truncate(daemon.page, 2)      # the counter's upper half is gone
        run_native("vmgenid-ioctl", "force")
        assert client.ask("v") == "value=2"
        assert os.stat(daemon.page).st_size == 4096
    assert "ERROR" in daemon.log() and "shorter than" in daemon.log()
    daemon_alive(daemon)


def test_short_or_missing_page_at_start_is_repaired(daemon_factory):
    d = daemon_factory()
    for _ in range(3):
        run_native("vmgenid-ioctl", "force")
    assert d.stop() == 0 and d.wait_node_gone()
    inode = os.stat(d.page).st_ino
    os.truncate(d.page, 1)
    d.start()
    st = os.stat(d.page)
    assert (st.st_ino, st.st_size) == (inode, 4096)
    assert page_counter(d) >= 3          # never lower than the state file
    assert d.stop() == 0 and d.wait_node_gone()
    os.unlink(d.page)
    d.start()
    assert page_counter(d) >= 3
    daemon_alive(d)


# -- finding 9: symlinks planted in the daemon's folder ----------------------

def test_planted_symlinks_are_not_followed(daemon_factory, tmp_path):
    victims = {}
    for name in ("page", "page.new", "state.new"):
        victim = tmp_path / f"victim-{name}"
        victim.write_bytes(b"precious " * 600)
        os.symlink(victim, tmp_path / name)
        victims[victim] = victim.read_bytes()
    link = tmp_path / "sysgenid"
    (tmp_path / "sysgenid.new").write_bytes(b"someone else's file")
    d = daemon_factory("--page-link", str(link))
    run_native("vmgenid-ioctl", "force")
    run_native("vmgenid-ioctl", "force")
    for victim, content in victims.items():
        assert victim.read_bytes() == content, victim
    assert not os.path.islink(d.page) and os.stat(d.page).st_size == 4096
    assert page_counter(d) == 2
    assert (tmp_path / "sysgenid.new").read_bytes() == b"someone else's file"
    assert os.readlink(link) == d.page
    daemon_alive(d)


def test_world_writable_folder_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    os.chmod(folder, 0o777)
    d = DaemonProcess(str(folder))
    out = subprocess.run(d.args, capture_output=True, text=True,
                         timeout=HANG, cwd=REPO_PATH)
    assert out.returncode == 1
    fatal = [line for line in out.stderr.splitlines() if "fatal:" in line]
    assert len(fatal) == 1 and str(folder) in fatal[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists(NODE)


# -- finding 8: corrupt state files ------------------------------------------

def test_corrupt_state_file_gives_one_fatal_line(tmp_path):
    from cuse_vmgenid.device.statefile import current_boot_id
    boot = current_boot_id()
    d = DaemonProcess(str(tmp_path))
    with open(d.state, "w") as f:
        f.write('{"boot_id": "%s", "counter": 1e400, "guid": null}' % boot)
    out = subprocess.run(d.args, capture_output=True, text=True,
                         timeout=HANG, cwd=REPO_PATH)
    assert out.returncode == 1
    fatal = [line for line in out.stderr.splitlines() if "fatal:" in line]
    assert len(fatal) == 1 and d.state in fatal[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists(NODE)


# -- finding 10: a second daemon on the same node ----------------------------

def test_second_daemon_names_the_served_node(daemon, tmp_path):
    second = DaemonProcess(str(tmp_path / "second"))
    os.makedirs(second.workdir, mode=0o700)
    out = subprocess.run(second.args, capture_output=True, text=True,
                         timeout=HANG, cwd=REPO_PATH)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert any(NODE in line and "already" in line for line in errors), \
        out.stderr
    daemon_alive(daemon)
    assert stat.S_ISCHR(os.stat(NODE).st_mode)


# -- issue 20, item 1: kernel records that carry a user's text ---------------

MARKER = "crng reseeded due to virtual machine fork"
SEGFAULT_C = "int main(void) { *(volatile int *)16 = 0; return 0; }\n"


def kernel_records_holding(text: str) -> list:
    """The kernel's own records (facility 0) whose text holds @text, as
    /dev/kmsg hands them out."""
    found = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return found
            except BrokenPipeError:
                continue
            prefix, _, body = record.partition(";")
            if int(prefix.split(",")[0]) >> 3 == 0 and \
                    text in body.split("\n")[0]:
                found.append(body.split("\n")[0])
    finally:
        os.close(fd)


def test_kernel_records_with_a_users_text_are_no_change_as_nobody(
        daemon_factory, tmp_path):
    """The kernel-log tier counts the kernel's own line only: `nobody`
    puts the words into facility-0 records twice (a segfaulting binary
    so named; a failed mount's option), and the generation stays 0."""
    d = daemon_factory("--source", "kernel-log")
    assert "source tier kernel-log" in d.log(), d.log()
    before = len(kernel_records_holding(MARKER))
    public = tmp_path / "public"
    public.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(public, 0o755)
    binary = public / MARKER
    subprocess.run(["gcc", "-O0", "-o", str(binary), "-x", "c", "-"],
                   input=SEGFAULT_C, text=True, check=True)
    crash = subprocess.run([*NOBODY, str(binary)], capture_output=True)
    assert crash.returncode == -11, crash
    mount = subprocess.run(
        [*NOBODY, "unshare", "-Urm", "mount", "-t", "tmpfs", "-o", MARKER,
         "none", "/mnt"], capture_output=True, text=True)
    assert mount.returncode != 0, mount
    forged = kernel_records_holding(MARKER)[before:]
    # The attack reached the kernel log: two records of the kernel's own
    # facility that hold the words, neither of them the kernel's line.
    assert len(forged) == 2, forged
    assert any("segfault" in r for r in forged), forged
    assert any("tmpfs" in r for r in forged), forged
    # Every thread of the daemon asleep after the records exist: the
    # kernel-log thread has read them (/dev/kmsg stays readable until).
    assert wait_state(d.proc.pid, "S"), d.log()
    assert page_counter(d) == 0, d.log()
    assert "kernel log record" not in d.log()
    daemon_alive(d)


# -- issue 20, item 8: a daemon out of descriptors ---------------------------

def test_out_of_descriptors_root_still_bumps(daemon_factory):
    """A careless admin's `prlimit --nofile` leaves the daemon no free
    descriptor: root's FORCE still succeeds (the privilege check has
    descriptors in reserve; EACCES would tell root it lacks a right).
    With the limit back, the next change works as ever."""
    d = daemon_factory()
    pid = d.proc.pid
    assert wait_state(pid, "S"), d.log()
    fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    # The lowest free number: every new descriptor would be at or above it.
    first_free = min(set(range(len(fds) + 1)) - fds)
    subprocess.run(["prlimit", f"--pid={pid}",
                    f"--nofile={first_free}:{first_free}"], check=True)
    out = run_native("vmgenid-ioctl", "force").stdout
    assert out == "ioctl=VMGENID_FORCE_GEN_UPDATE ret=0 errno=0\n", \
        (out, d.log())
    assert page_counter(d) == 1
    daemon_alive(d)

    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=1024:1024"],
                   check=True)
    force_from_elsewhere()
    assert page_counter(d) == 2
    daemon_alive(d)


# -- a flood of unknown ioctls: refused in C, a few log lines ---------------

FLOOD = 2000
UNKNOWN_FLOOD = f"""
import errno, fcntl, os
fd = os.open("{NODE}", os.O_RDWR)
refused = 0
for i in range({FLOOD}):
    try:
        fcntl.ioctl(fd, 0x2D06 + i % 8, 0)
    except OSError as e:
        refused += e.errno == errno.EINVAL
print(refused, os.getpid(), flush=True)
"""


def test_a_flood_of_unknown_ioctls_as_nobody_is_refused_and_counted(daemon):
    """Each one EINVAL, answered by transport.c without entering Python;
    the log counts them in a line at most every 10 s (the first at once),
    never a line per request, and the daemon lives."""
    before = page_counter(daemon)
    proc = subprocess.run([*NOBODY, SYSTEM_PYTHON, "-c", UNKNOWN_FLOOD],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    refused, pid = map(int, proc.stdout.split())
    assert refused == FLOOD
    lines = unknown_ioctls_logged(daemon, FLOOD)
    assert sum(n for n, _, _ in lines) == FLOOD, daemon.log()
    assert 1 <= len(lines) <= 3, lines
    assert lines[-1][2] == pid
    assert 0x2D06 <= lines[-1][1] <= 0x2D0D
    assert daemon.log().count("unknown ioctl") == len(lines)
    assert page_counter(daemon) == before
    daemon_alive(daemon)
