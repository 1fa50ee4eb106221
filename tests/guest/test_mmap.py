# SPDX-License-Identifier: MIT
"""mmap of /dev/vmgenid (docs/interface.rst, the mmap row, and "The page").

CUSE has no mmap: the kernel answers ENODEV.  With native/build/
libvmgenid-mmap.so preloaded, mmap() of a /dev/vmgenid descriptor maps the
daemon's page instead (always MAP_SHARED from a read-only descriptor), so
the counter can be probed without a system call.  Each daemon of this suite
has its own page (daemon.page), passed to the library as VMGENID_PAGE.
The helper is native/build/vmgenid-map (see its header for the options).
"""

import os
import signal
import subprocess

from .device import NATIVE, bump, native, page_counter
from .processes import HANG, SYS_READ, Child, wait_blocked

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


def run_map(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([native("vmgenid-map"), *args], env=env,
                          capture_output=True, text=True, timeout=HANG)


def map_proc(env: dict, *args: str) -> Child:
    """vmgenid-map, its commands on stdin."""
    return Child([native("vmgenid-map"), *args], stdin=True, env=env)


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
    with map_proc(preload_env(daemon.page), "-i") as m:
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
    with map_proc(preload_env(daemon.page), "-b") as m:
        assert m.line() == "map ok value=0"
        wait_blocked(m, SYS_READ)
        assert bump() == 1
        assert m.line() == "read ret=4 value=1 mapped=1 errno=0"
        assert m.finish() == 0


def test_forked_child_mapping_follows_updates(daemon):
    with map_proc(preload_env(daemon.page), "-f", "-i") as m:
        assert m.line() == "map ok value=0"
        assert m.line() == "child"
        assert bump() == 1
        assert m.ask("v") == "value=1"
        assert m.finish() == 0


def test_map_private_request_updates_and_cannot_be_made_writable(daemon):
    env = preload_env(daemon.page)
    with map_proc(env, "-p", "-M", "-i") as m:
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
    with map_proc(env, "-i") as m:
        assert m.line() == "map ok value=0"
        assert daemon.stop() == 0
        assert daemon.wait_node_gone()
        restarted = daemon_factory("--max-watchers-per-uid", "8")
        assert restarted.page == daemon.page
        assert page_counter(daemon) == 1
        assert m.ask("v") == "value=1"
        assert m.finish() == 0
    r = run_map(env)
    assert r.stdout == "map ok value=1\n", r.stderr
