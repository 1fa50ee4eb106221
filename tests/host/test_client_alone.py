# SPDX-License-Identifier: MIT
"""The client (client/vmgenid, the vmgenid distribution) never imports the
daemon or cffi: every module of it imports, and its command runs, in a
Python where cuse_vmgenid, cffi and _cffi_backend cannot be imported
(this checkout's venv has all three).  tests/host/test_packages.py
installs it alone, built with no compiler."""

import os
import subprocess
import sys

import vmgenid
import vmgenid.version

BLOCKED = ("cuse_vmgenid", "cffi", "_cffi_backend")

PROGRAM = f"""
import importlib, pkgutil, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None        # import raises ImportError
import vmgenid
modules = [m.name for m in pkgutil.walk_packages(vmgenid.__path__,
                                                 "vmgenid.")
           if m.name != "vmgenid.__main__"]      # it runs the command
for name in modules:
    importlib.import_module(name)
print(" ".join(sorted(modules)))
from vmgenid import tool
sys.exit(tool.main(sys.argv[1:]))
"""


def run_alone(*args: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PYTHON")}
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env,
                          capture_output=True, text=True, cwd="/")


def test_every_client_module_imports_without_the_daemon_or_cffi():
    proc = run_alone("--version")
    assert proc.returncode == 0, proc.stderr
    modules, version = proc.stdout.splitlines()
    assert set(modules.split()) >= {"vmgenid.tool", "vmgenid.ioctls",
                                    "vmgenid.status", "vmgenid.version"}
    # As recorded now: a build since this process imported vmgenid (the
    # tests' shim, make -C native) records the version of a newer commit.
    assert version == f"vmgenid {vmgenid.version.recorded()}"


def test_its_status_without_a_daemon_fails_with_one_line(tmp_path):
    proc = run_alone("status", "--status-file", str(tmp_path / "none.json"))
    assert (proc.returncode, proc.stdout.count("\n")) == (3, 1), proc
    assert proc.stderr == (f"vmgenid: no status file {tmp_path}/none.json: "
                           "cuse-vmgenid is not running (or runs without "
                           "--status)\n")


def test_the_block_stops_a_module_that_needs_cffi():
    # The daemon's compiled shim needs cffi's backend: blocked, it fails.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\nfor n in ('cffi', "
         "'_cffi_backend'): sys.modules[n] = None\n"
         "import cuse_vmgenid.device.transport"],
        capture_output=True, text=True, cwd="/")
    assert proc.returncode == 1
    assert "import of _cffi_backend halted" in proc.stderr, proc.stderr


def test_the_daemon_loads_no_asyncio_through_the_client():
    """The daemon imports the client's shared facts (vmgenid.status,
    .procinfo, ...), so the package's __init__ runs in it: asyncio, which
    only async_open() needs, cost the daemon 6.8 MiB of RSS at rest
    (docs/benchmarks.rst, item 6: 24,592 KiB against 17,796 KiB before
    the client became a package of its own)."""
    program = ("import sys, cuse_vmgenid.service.cli, vmgenid\n"
               "print(sorted(m for m in sys.modules\n"
               "             if m.split('.')[0] in ('asyncio', 'ssl')))")
    proc = subprocess.run([sys.executable, "-c", program],
                          capture_output=True, text=True, check=True)
    assert proc.stdout == "[]\n"
