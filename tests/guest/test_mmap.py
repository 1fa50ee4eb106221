"""mmap of /dev/vmgenid (SPEC.md, the mmap row, and "page").

CUSE has no mmap: the kernel answers ENODEV.  With native/build/
libvmgenid-mmap.so preloaded, mmap() of a /dev/vmgenid descriptor maps the
daemon's page instead (always MAP_SHARED from a read-only descriptor), so
the counter can be probed without a system call.  Each daemon of this suite
has its own page (daemon.page), passed to the library as VMGENID_PAGE.
The helper is native/build/vmgenid-map (see its header for the options).
"""

import os
import select
import signal
import struct
import subprocess
import time

import pytest

from .device import NATIVE, NODE, REPO, bump, native

# Hang-rescue only: how long to wait for a line or a state.
HANG = 30.0
# After the reader is seen asleep in read(), slack for the request to reach
# the daemon under emulation (not a figure).
SETTLE = 0.5
NR_READ = 0                     # x86_64, for /proc/PID/syscall
LIB = os.path.join(NATIVE, "libvmgenid-mmap.so")


def preload_env(page: str) -> dict:
    if not os.access(LIB, os.R_OK):
        raise FileNotFoundError(f"{LIB}: run `make -C native` first")
    env = dict(os.environ)
    env.update(LD_PRELOAD=LIB, VMGENID_PAGE=page)
    return env


def plain_env() -> dict:
    env = dict(os.environ)
    for name in ("LD_PRELOAD", "VMGENID_PAGE", "VMGENID_DEVICE"):
        env.pop(name, None)
    return env


def page_value(path: str) -> int:
    with open(path, "rb") as f:
        return struct.unpack("=I", f.read(4))[0]


def run_map(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([native("vmgenid-map"), *args], env=env,
                          capture_output=True, text=True, timeout=HANG * 2)


class MapProc:
    """vmgenid-map with commands on stdin and its lines read with a timeout."""

    def __init__(self, env: dict, *args: str):
        self.proc = subprocess.Popen(
            [native("vmgenid-map"), *args], env=env, cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._buf = b""
        self._rc = None

    def line(self) -> str:
        deadline = time.monotonic() + HANG
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], \
                f"no line from vmgenid-map in {HANG}s"
            data = os.read(fd, 4096)
            assert data, f"vmgenid-map ended: {self.proc.stderr.read()}"
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.line()

    def finish(self) -> int:
        """EOF on stdin (the helper ends), SIGKILL if it does not."""
        if self._rc is not None:
            return self._rc
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(HANG)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(HANG)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self._rc = rc
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()


def _device_fds(pid: int) -> set:
    fds = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == NODE:
                fds.add(int(name))
        except OSError:
            pass
    return fds


def blocked_in_read(pid: int) -> bool:
    """Asleep (S) in read(2) on a /dev/vmgenid descriptor."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return (fields[0] == str(NR_READ)
                and int(fields[1], 16) in _device_fds(pid) and state == "S")
    except (OSError, IndexError, ValueError):
        return False


def wait_blocked_in_read(m: MapProc) -> None:
    deadline = time.monotonic() + HANG
    while not blocked_in_read(m.pid):
        assert m.proc.poll() is None, f"exited {m.proc.returncode}"
        assert time.monotonic() < deadline, f"pid {m.pid} never blocked"
        time.sleep(0.02)
    time.sleep(SETTLE)


def maps_perms(pid: int, path: str) -> list[str]:
    with open(f"/proc/{pid}/maps") as f:
        return [line.split()[1] for line in f
                if line.rstrip().endswith(" " + path)]


# -- the rows ------------------------------------------------------------------

def test_mmap_error_rows(daemon, tmp_path):
    """Every error of the mmap row against one daemon (a daemon start costs
    tens of seconds under emulation): without the preload the kernel's
    ENODEV, with it the seed's EINVAL and EPERM, and ENODEV with no page."""
    env = preload_env(daemon.page)
    no_page = preload_env(str(tmp_path / "no-such-page"))
    cases = {   # name: (environment, vmgenid-map options, expected line)
        "no preload": (plain_env(), [], "map errno=ENODEV"),
        "length 8192": (env, ["-l", "8192"], "map errno=EINVAL"),
        "offset 4096": (env, ["-o", "4096"], "map errno=EINVAL"),
        "PROT_WRITE MAP_SHARED": (env, ["-w"], "map errno=EPERM"),
        "PROT_WRITE MAP_PRIVATE": (env, ["-w", "-p"], "map errno=EPERM"),
        "page missing": (no_page, [], "map errno=ENODEV"),
    }
    seen = {}
    for name, (case_env, args, _) in cases.items():
        r = run_map(case_env, *args)
        seen[name] = f"{(r.stdout + r.stderr).strip()} (exit {r.returncode})"
    assert seen == {name: f"{line} (exit 1)"
                    for name, (_, _, line) in cases.items()}


# -- the mapping ---------------------------------------------------------------

def test_mapping_changes_in_place_after_force(daemon):
    with MapProc(preload_env(daemon.page), "-i") as m:
        assert m.line() == "map ok value=0"
        assert bump() == 1
        assert m.ask("v") == "value=1"
        assert bump() == 2
        assert m.ask("v") == "value=2"
        assert maps_perms(m.pid, daemon.page) == ["r--s"]
        assert m.finish() == 0


def test_blocked_reader_finds_new_value_in_mapping_on_wake(daemon):
    """The page is stored before readers are woken: a reader that loads the
    mapping right after read() returns sees the value read() gave it."""
    with MapProc(preload_env(daemon.page), "-b") as m:
        assert m.line() == "map ok value=0"
        wait_blocked_in_read(m)
        assert bump() == 1
        assert m.line() == "read ret=4 value=1 mapped=1 errno=0"
        assert m.finish() == 0


def test_forked_child_mapping_follows_updates(daemon):
    with MapProc(preload_env(daemon.page), "-f", "-i") as m:
        assert m.line() == "map ok value=0"
        assert m.line() == "child"
        assert bump() == 1
        assert m.ask("v") == "value=1"
        assert m.finish() == 0


def test_map_private_request_updates_and_cannot_be_made_writable(daemon):
    env = preload_env(daemon.page)
    with MapProc(env, "-p", "-M", "-i") as m:
        assert m.line() == "map ok value=0"
        assert m.line() == "mprotect ret=-1 errno=EACCES"
        assert maps_perms(m.pid, daemon.page) == ["r--s"]
        assert bump() == 1
        assert m.ask("v") == "value=1"
        assert m.finish() == 0
    r = run_map(env, "-p", "-s")
    assert r.stdout == "map ok value=1\n"
    assert r.returncode == -signal.SIGSEGV, r.stderr


def test_mapping_outlives_daemon_restart_and_new_node_maps(daemon,
                                                          daemon_factory):
    """The page file stays across a same-boot restart (which bumps: no GUID
    source); the new node, whatever its major/minor, maps it again."""
    env = preload_env(daemon.page)
    with MapProc(env, "-i") as m:
        assert m.line() == "map ok value=0"
        assert daemon.stop() == 0
        assert daemon.wait_node_gone()
        restarted = daemon_factory("--max-watchers-per-uid", "8")
        assert restarted.page == daemon.page
        assert page_value(daemon.page) == 1
        assert m.ask("v") == "value=1"
        assert m.finish() == 0
    r = run_map(env)
    assert r.stdout == "map ok value=1\n", r.stderr
