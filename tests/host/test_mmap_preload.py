# SPDX-License-Identifier: MIT
"""libvmgenid-mmap.so on the host, with a stand-in device (docs/interface.rst,
"The page").

This host has no CUSE, so the "device" is /dev/null (a character device
whose own mmap answers ENODEV, like a CUSE node's): VMGENID_DEVICE=/dev/null
makes the library take mmap() of a /dev/null descriptor for a mapping of
/dev/vmgenid, and VMGENID_PAGE points at a page file of this test.  The
guest suite (tests/guest/test_mmap.py) runs the same library against the
real daemon.

VMGENID_NATIVE_BUILD selects the build directory (default native/build);
`make -C native sanitize` builds native/build/sanitize, with
-fsanitize=address,undefined, where every helper run below also fails on a
sanitizer report.
"""

import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("VMGENID_NATIVE_BUILD",
                                          os.path.join("native", "build")))
LIB = os.path.join(BUILD, "libvmgenid-mmap.so")
HELPER = os.path.join(BUILD, "vmgenid-map")
DEVICE = "/dev/null"            # the stand-in node
OTHER = "/dev/zero"             # another character device
PAGE_SIZE = 4096
TIMEOUT = 30.0
SANITIZER_REPORT = ("ERROR: AddressSanitizer", "runtime error:",
                    "ERROR: LeakSanitizer")


def _sanitizer_runtime(lib: str) -> list[str]:
    """A sanitized library needs its ASan runtime first in LD_PRELOAD."""
    out = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("libasan.so") and len(parts) > 2:
            return [parts[2]]
    return []


@pytest.fixture(scope="module")
def preload():
    for path in (LIB, HELPER):
        if not os.access(path, os.R_OK):
            pytest.fail(f"{path} missing: run `make -C native` first")
    return " ".join(_sanitizer_runtime(LIB) + [LIB])


def write_page(path: str, value: int, size: int = PAGE_SIZE) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("=I", value).ljust(size, b"\0")[:size])


class Page:
    """A page file, updated in place as the daemon does (one 4-byte store)."""

    def __init__(self, path: str, value: int):
        self.path = path
        write_page(path, value)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._map = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def store(self, value: int) -> None:
        struct.pack_into("=I", self._map, 0, value)

    def close(self) -> None:
        self._map.close()


@pytest.fixture
def page(tmp_path):
    p = Page(str(tmp_path / "page"), 7)
    yield p
    p.close()


def env_for(preload: str, device: str = DEVICE, page_path: str = "",
            **extra: str) -> dict:
    env = dict(os.environ)
    env.update(LD_PRELOAD=preload, VMGENID_DEVICE=device,
               VMGENID_PAGE=page_path,
               # -s expects the kernel's SIGSEGV, not ASan's report of it
               ASAN_OPTIONS="handle_segv=0:detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    env.update(extra)
    return env


def no_sanitizer_report(stderr: str) -> None:
    for marker in SANITIZER_REPORT:
        assert marker not in stderr, stderr


def run_map(env: dict, *args: str, device: str = DEVICE
            ) -> subprocess.CompletedProcess:
    r = subprocess.run([HELPER, "-d", device, *args], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    no_sanitizer_report(r.stderr)
    return r


class Interactive:
    """vmgenid-map -i: commands on stdin, one reply line each."""

    def __init__(self, env: dict, *args: str, device: str = DEVICE):
        self.proc = subprocess.Popen(
            [HELPER, "-d", device, "-i", *args], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        self._buf = b""
        self._rc = None

    def line(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], \
                "no output from vmgenid-map"
            data = os.read(fd, 4096)
            assert data, f"vmgenid-map ended: {self.finish()}"
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.line()

    def finish(self) -> int:
        """EOF on stdin ends the helper; returns its exit code."""
        if self._rc is not None:
            return self._rc
        self.proc.stdin.close()
        try:
            rc = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(TIMEOUT)
        stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        self._rc = rc
        no_sanitizer_report(stderr)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()


def maps_lines(pid: int, path: str) -> list[str]:
    with open(f"/proc/{pid}/maps") as f:
        return [line for line in f if line.rstrip().endswith(" " + path)]


# -- the device mapping -------------------------------------------------------

@pytest.mark.parametrize("call", ["mmap", "mmap64"])
def test_device_mapping_shows_page_counter(preload, page, call):
    args = ["-6"] if call == "mmap64" else []
    r = run_map(env_for(preload, page_path=page.path), *args)
    assert r.stdout == "map ok value=7\n", r.stderr
    assert r.returncode == 0


def test_device_mapping_follows_page_updates_in_place(preload, page):
    with Interactive(env_for(preload, page_path=page.path)) as m:
        assert m.line() == "map ok value=7"
        page.store(8)
        assert m.ask("v") == "value=8"
        page.store(0xfffffffe)
        assert m.ask("v") == "value=4294967294"
        assert m.finish() == 0


def test_device_mapping_is_shared_read_only_page_without_open_fd(
        preload, page):
    with Interactive(env_for(preload, page_path=page.path)) as m:
        assert m.line() == "map ok value=7"
        lines = maps_lines(m.pid, page.path)
        assert len(lines) == 1 and lines[0].split()[1] == "r--s", lines
        fds = [os.readlink(f"/proc/{m.pid}/fd/{n}")
               for n in os.listdir(f"/proc/{m.pid}/fd")]
        assert page.path not in fds
        assert m.finish() == 0


def test_map_private_request_gets_updating_unwritable_shared_mapping(
        preload, page):
    with Interactive(env_for(preload, page_path=page.path), "-p",
                     "-M") as m:
        assert m.line() == "map ok value=7"
        assert m.line() == "mprotect ret=-1 errno=EACCES"
        lines = maps_lines(m.pid, page.path)
        assert len(lines) == 1 and lines[0].split()[1] == "r--s", lines
        page.store(9)
        assert m.ask("v") == "value=9"
        assert m.finish() == 0


@pytest.mark.parametrize("flags", [[], ["-p"]], ids=["shared", "private"])
def test_store_into_device_mapping_faults(preload, page, flags):
    r = run_map(env_for(preload, page_path=page.path), *flags, "-s")
    assert r.stdout == "map ok value=7\n"
    assert r.returncode == -signal.SIGSEGV, r.stderr


def test_forked_child_keeps_updating_mapping(preload, page):
    with Interactive(env_for(preload, page_path=page.path), "-f") as m:
        assert m.line() == "map ok value=7"
        assert m.line() == "child"
        page.store(10)
        assert m.ask("v") == "value=10"
        assert m.finish() == 0


# -- the seed's checks (vmgenid_mmap) and the kernel's before them ------------

@pytest.mark.parametrize("args", [
    ["-l", "8192"], ["-l", "4097"], ["-o", "4096"], ["-o", "1"], ["-l", "0"],
], ids=["length-8192", "length-4097", "offset-4096", "offset-unaligned",
        "length-0"])
def test_bad_length_or_offset_fails_einval(preload, page, args):
    r = run_map(env_for(preload, page_path=page.path), *args)
    assert r.stdout == "map errno=EINVAL\n", r.stderr
    assert r.returncode == 1


def test_length_below_one_page_maps(preload, page):
    r = run_map(env_for(preload, page_path=page.path), "-l", "4")
    assert r.stdout == "map ok value=7\n", r.stderr


@pytest.mark.parametrize("args", [["-w"], ["-w", "-p"], ["-r", "-w", "-p"]],
                         ids=["shared", "private", "private-rdonly-fd"])
def test_prot_write_fails_eperm(preload, page, args):
    r = run_map(env_for(preload, page_path=page.path), *args)
    assert r.stdout == "map errno=EPERM\n", r.stderr


def test_shared_prot_write_on_read_only_fd_fails_eacces_as_kernel(
        preload, page):
    """do_mmap() refuses it before the driver's mmap is called."""
    r = run_map(env_for(preload, page_path=page.path), "-r", "-w")
    assert r.stdout == "map errno=EACCES\n", r.stderr


def test_read_only_fd_maps(preload, page):
    r = run_map(env_for(preload, page_path=page.path), "-r")
    assert r.stdout == "map ok value=7\n", r.stderr


@pytest.mark.parametrize("kind", ["missing", "empty", "short", "directory"])
def test_unusable_page_fails_enodev(preload, tmp_path, kind):
    path = str(tmp_path / "page")
    if kind == "empty":
        write_page(path, 7, size=0)
    elif kind == "short":
        write_page(path, 7, size=PAGE_SIZE - 1)
    elif kind == "directory":
        os.mkdir(path)
    r = run_map(env_for(preload, page_path=path))
    assert r.stdout == "map errno=ENODEV\n", r.stderr


# -- everything else is untouched ---------------------------------------------

def test_other_char_device_fd_is_not_redirected(preload, page):
    """/dev/null while the node is /dev/zero: the kernel's own ENODEV."""
    r = run_map(env_for(preload, device=OTHER, page_path=page.path), "-w")
    assert r.stdout == "map errno=ENODEV\n", r.stderr


def test_mapping_of_other_char_device_works_as_without_library(
        preload, page):
    r = run_map(env_for(preload, page_path=page.path), "-w", device=OTHER)
    assert r.stdout == "map ok value=0\n", r.stderr


def test_regular_file_mapping_is_untouched(preload, page, tmp_path):
    other = str(tmp_path / "data")
    write_page(other, 42)
    r = run_map(env_for(preload, page_path=page.path), "-w", device=other)
    assert r.stdout == "map ok value=42\n", r.stderr


def test_missing_node_passes_through(preload, page, tmp_path):
    r = run_map(env_for(preload, device=str(tmp_path / "no-node"),
                        page_path=page.path), "-w")
    assert r.stdout == "map errno=ENODEV\n", r.stderr


def test_overlong_env_path_disables_library(preload, page):
    """PROT_WRITE gives the kernel's ENODEV, not the library's EPERM."""
    r = run_map(env_for(preload, page_path="/" + "p" * 5000), "-w")
    assert r.stdout == "map errno=ENODEV\n", r.stderr


def test_node_identity_is_looked_up_at_every_mapping(preload, page,
                                                     tmp_path):
    """The CUSE major/minor changes across daemon restarts: the library
    compares with the node's current st_rdev, not one seen at load."""
    node = str(tmp_path / "node")
    os.symlink(DEVICE, node)
    with Interactive(env_for(preload, device=node,
                             page_path=page.path)) as m:
        assert m.line() == "map ok value=7"
        os.unlink(node)
        os.symlink(OTHER, node)
        assert m.ask("m") == "map errno=ENODEV"
        os.unlink(node)
        os.symlink(DEVICE, node)
        page.store(11)
        assert m.ask("m") == "map ok value=11"
        assert m.finish() == 0


def test_unmodified_python_program_maps_page(preload, page):
    code = ("import mmap, os, struct\n"
            f"fd = os.open({DEVICE!r}, os.O_RDONLY)\n"
            "m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)\n"
            "print(struct.unpack_from('=I', m)[0])\n")
    env = env_for(preload, page_path=page.path,
                  ASAN_OPTIONS="detect_leaks=0")  # the interpreter's own
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    no_sanitizer_report(r.stderr)
    assert r.stdout == "7\n", r.stderr
