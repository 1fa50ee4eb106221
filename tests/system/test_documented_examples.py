# SPDX-License-Identifier: MIT
"""The examples of README and vmgenid(1) that need the installed package,
run as written in one guest that boots systemd (the guest side is
tests/system/scenarios/examples.sh; tests/examples.py names the blocks):
README's apt install of the build, `vmgenid status` and `vmgenid wait`
as an ordinary user, `vmgenid bump` as root (README's, then the man
page's), the options line in /etc/default/cuse-vmgenid and the restart,
and a unit with README's [Unit] lines, queued while the daemon is
stopped.

    tools/build-deb
    .venv/bin/python -m pytest -v tests/system/test_documented_examples.py
"""

import subprocess
import sys

import pytest

from tests.harness.cache import REPO_ROOT
from tests.harness.vm import GuestVM

from .test_service import BOOT, STEP, built_deb, lines

SCENARIO = "tests/system/scenarios/examples.sh"
# What `pip install .` builds with (pyproject.toml's build-system), for
# the guest, which has no network.
WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"


@pytest.fixture(scope="module")
def guest() -> str:
    """The scenario's console, once per module: one boot for all."""
    deb = built_deb()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q",
                    "--dest", str(WHEELHOUSE), "setuptools>=61",
                    "cffi>=1.15"], check=True, timeout=STEP)
    with GuestVM("6.12", ["sh", SCENARIO, deb], systemd=True) as vm:
        booted = vm.wait_for(r"^BOOTED ", timeout=BOOT)
        # README's venv builds the cffi module under emulation: minutes.
        venv = vm.wait_for(r"^VENV-RC ", timeout=BOOT)
        took = vm.arrived_at(venv.end()) - vm.arrived_at(booted.end())
        print(f"\nREADME's venv: {took:.1f} s from boot to the daemon's "
              "exit")
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    return vm.output


def test_readme_venv_runs_the_daemon_at_its_defaults(guest):
    """Without the package: the venv, pip install . of the checkout, the
    modules, the daemon as root at its defaults: it serves with the GUID
    source, and ends cleanly at SIGTERM, its node gone."""
    out = lines(guest, "VENV-STATUS-OUT")
    assert lines(guest, "VENV-STATUS-RC") == ["0"], out + \
        lines(guest, "VENV-OUT")
    assert out[0] == "generation 0", out
    # 6.12 with its vmgenid driver bound: the kernel's record tells.
    assert "source fwcfg (GUID available, change seen on event)" in out, out
    assert lines(guest, "VENV-RC") == ["0"], lines(guest, "VENV-OUT")
    assert lines(guest, "VENV-NODE-AFTER")[0].endswith(
        "No such file or directory")


def test_readme_install_serves_vmgenid(guest):
    assert lines(guest, "INSTALL-RC") == ["0"], lines(guest, "INSTALL-OUT")
    assert lines(guest, "IS-ACTIVE") == ["active"]
    assert lines(guest, "NODE") == ["character special file"]
    # The Debian package's apt line, from the checkout: the same build.
    assert lines(guest, "DEB-RC") == ["0"], lines(guest, "DEB-OUT")
    assert any("is already the newest version" in line
               for line in lines(guest, "DEB-OUT")), lines(guest, "DEB-OUT")


def test_readme_status_says_generation_0_and_the_source(guest):
    """"generation 0, watchers, the source (fwcfg, GUID available, change
    seen on event), the daemon's pid: exit 0"."""
    out = lines(guest, "STATUS-OUT")
    assert lines(guest, "STATUS-RC") == ["0"], out
    [pid] = lines(guest, "MAIN-PID installed")
    assert out[0] == "generation 0", out
    # The hooks' runner (cuse-vmgenid-hooks.service, started after the
    # daemon) is a watcher once it has opened the device.
    assert out[2] in ("watchers 0, outdated 0", "watchers 1, outdated 0"), out
    assert "source fwcfg (GUID available, change seen on event)" in out, out
    assert f"daemon pid {pid} (running)" in out, out


@pytest.mark.parametrize("tag, generation", [("README", 1), ("MAN", 2)])
def test_wait_ends_at_roots_bump(guest, tag, generation):
    """README: "vmgenid bump: prints 1; the first shell prints 1 and
    exits"; then vmgenid(1): "The first prints the new counter and
    exits"."""
    assert lines(guest, f"{tag}-WATCHING") == ["0"]
    assert lines(guest, f"{tag}-BUMP-RC") == ["0"]
    assert lines(guest, f"{tag}-BUMP-OUT") == [str(generation)]
    assert lines(guest, f"{tag}-WAIT-RC") == ["0"]
    assert lines(guest, f"{tag}-WAIT-OUT") == [str(generation)]


def test_readme_options_take_effect_at_the_restart(guest):
    """--page-link /dev/sysgenid --max-watchers-per-uid 256, from
    /etc/default/cuse-vmgenid at `systemctl restart cuse-vmgenid`."""
    assert lines(guest, "RESTART-RC") == ["0"]
    assert lines(guest, "MAIN-PID restarted") != \
        lines(guest, "MAIN-PID installed")
    assert lines(guest, "PAGE-LINK") == ["/run/vmgenid/page"]
    assert lines(guest, "QUOTA") == ["256 EDQUOT"]


def test_readme_unit_order_sees_the_node_and_links_at_start(guest):
    """Queued while the daemon is stopped (no node), the unit waits, then
    starts once the daemon is ready, and finds the node and the link."""
    assert lines(guest, "NODE-STOPPED")[0].endswith(
        "No such file or directory"), lines(guest, "NODE-STOPPED")
    why = lines(guest, "JOBS") + lines(guest, "CLIENT-JOURNAL")
    state, jobs = lines(guest, "CLIENT-QUEUED")[0].split()
    assert (state, int(jobs)) == ("inactive", 1), why
    assert lines(guest, "START-RC") == ["0"]
    assert lines(guest, "CLIENT-RESULT") == ["success"], why
    assert lines(guest, "CLIENT-SAW") == ["character special file",
                                          "/run/vmgenid/page"], why
