# SPDX-License-Identifier: MIT
"""The Debian packages on a guest that boots systemd, driven from the host:
dpkg -i of build/deb/python3-vmgenid_*.deb alone first (no daemon, no
compiler that runs), then cuse-vmgenid_*.deb and cuse-vmgenid-dev_*.deb
(all made by tools/build-deb), the daemon's as the last release first, an example
built against the installed header, the service under its own unit and
hardening, /dev/vmgenid served, a real save and restore with a new VM
Generation ID, the upgrade to the build, a new hook run by
cuse-vmgenid-hooks.service, options
from /etc/default at a restart, and stop; with them systemd's manners:
STATUS= as the figures change, the node's device unit, journal
priorities, needrestart's exclusion.  The guest side is
tests/system/scenarios/service.sh; it prints markers.

Run on the host (one guest under emulation, saved and restored once):
    tools/build-deb
    .venv/bin/python -m pytest -v -s tests/system
"""

import os
import time
import uuid

import pytest

from vmgenid import version
from tests.harness.cache import REPO_ROOT
from tests.harness.vm import GuestVM

DEB_DIR = REPO_ROOT / "build" / "deb"
SCENARIO = "tests/system/scenarios/service.sh"
BOOT = 900          # hang rescues only: emulation on a shared host is slow
STEP = 600


def built_deb(package: str = "cuse-vmgenid") -> str:
    """The newest build/deb/@package_*.deb, relative to the repo."""
    debs = sorted(DEB_DIR.glob(f"{package}_*.deb"),
                  key=lambda deb: deb.stat().st_mtime)
    if not debs:
        pytest.fail(f"no {DEB_DIR}/{package}_*.deb: run tools/build-deb")
    return str(debs[-1].relative_to(REPO_ROOT))


def deb_version(deb: str) -> str:
    return deb.rsplit("/", 1)[-1].split("_")[1]


def lines(output: str, prefix: str) -> list[str]:
    """The guest's lines starting with @prefix + " ", without it."""
    return [line[len(prefix) + 1:] for line in output.splitlines()
            if line.startswith(prefix + " ")]


def shown(output: str, tag: str) -> dict[str, str]:
    """The unit's properties as the scenario showed them at @tag."""
    return dict(line.split("=", 1) for line in lines(output, f"SHOW {tag}"))


def counter(output: str, tag: str) -> int:
    [value] = lines(output, f"COUNTER {tag}")
    return int(value.split()[0])


def test_the_package_serves_vmgenid_under_systemd_across_restore_upgrade_restart_and_stop(  # noqa: E501
        tmp_path):
    deb, dev = built_deb(), built_deb("cuse-vmgenid-dev")
    client = built_deb("python3-vmgenid")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    started = time.monotonic()
    with GuestVM("6.12", ["sh", SCENARIO, deb, dev, version.RELEASE, client],
                 guid=first, systemd=True) as vm:
        booted = vm.wait_for(r"^BOOTED (\S+) uptime (\S+)$", timeout=BOOT)
        print(f"\nsystemd reached its target ({booted[1]}) "
              f"{vm.arrived_at(booted.end()) - started:.1f} s after QEMU "
              f"started, guest uptime {booted[2]} s")
        vm.wait_for(r"^SAVE-ME counter \d+$", timeout=STEP)
        snapshot = vm.save(tmp_path / "guest.snapshot")
        vm.restore(snapshot, guid=second)
        snapshot.path.unlink()
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    print(f"total {time.monotonic() - started:.1f} s")
    out = vm.output

    # Booted by systemd: no unit failed on the way (the guest's own
    # units, before the package).
    assert lines(out, "BOOTED")[0].split()[0] == "running", \
        lines(out, "FAILED-UNIT")

    # The client alone: installed without the daemon, where no compiler
    # runs; its command and module work, and fail cleanly with no daemon.
    assert lines(out, "ALONE-CC") != ["0"]
    assert lines(out, "ALONE-DPKG") == ["0"]
    assert lines(out, "ALONE-DAEMON") in (["absent"], ["not-installed"])
    assert lines(out, "ALONE-OWNER") == ["python3-vmgenid: /usr/bin/vmgenid"]
    assert lines(out, "ALONE-VERSION") == [f"vmgenid {deb_version(client)}"]
    assert lines(out, "ALONE-STATUS") == ["3 0 1"]      # exit, lines out, err
    assert lines(out, "ALONE-STATUS-ERR") == [
        "vmgenid: no status file /run/vmgenid/status.json: cuse-vmgenid is "
        "not running (or runs without --status)"]
    assert lines(out, "ALONE-IMPORT") == [
        "/usr/lib/python3/dist-packages/vmgenid/__init__.py"]
    assert lines(out, "ALONE-OPEN") == [
        "vmgenid.NoDevice: [Errno 2] no /dev/vmgenid (is cuse-vmgenid "
        "running?)"]

    # Installed, enabled, started by the package, READY=1 reached: a
    # Type=notify unit is "active" only after it.
    assert lines(out, "DPKG") == ["0"]
    assert lines(out, "VERSION installed") == [version.RELEASE]
    installed = shown(out, "installed")
    assert installed["Type"] == "notify"
    assert (installed["ActiveState"], installed["SubState"]) == (
        "active", "running")
    assert installed["StatusText"] == \
        "generation 0, 1 watchers, 0 outdated, source fwcfg"
    assert installed["PrivateMounts"] == "yes"
    assert lines(out, "IS-ENABLED") == ["enabled"]
    assert lines(out, "NODE") == ["character special file 666"]
    assert counter(out, "installed") == 0
    print("systemd-analyze security:", lines(out, "SECURITY"))

    # The udev rule tags the node for systemd: dev-vmgenid.device follows
    # the daemon, and a client unit ordered after it finds the node.
    assert lines(out, "DEVICE-UNIT installed") == ["active"]
    assert lines(out, "CLIENT-AFTER") == ["1"]
    assert lines(out, "CLIENT-UNIT") == ["0 success"]

    # needrestart (its own conf.d file, evaluated as needrestart does)
    # never selects the service; /etc/default's file is a conffile.
    assert lines(out, "NEEDRESTART") == ["0"]
    assert set(lines(out, "CONFFILE")) >= {
        "/etc/default/cuse-vmgenid",
        "/etc/needrestart/conf.d/cuse-vmgenid.conf"}

    # The layout: the daemon in /usr/sbin, the header through pkg-config,
    # and every example of the -dev package built against it.
    assert lines(out, "DAEMON-PATH") == ["/usr/sbin/cuse-vmgenid"]
    # What is Debian's own (upgrades, the sandbox, the node's mode).
    assert [os.path.basename(p).split(".gz")[0]
            for p in lines(out, "README-DEBIAN")] == ["README.Debian"]
    assert [line.strip() for line in lines(out, "PKG-CONFIG")] == [
        "-I/usr/include/cuse-vmgenid"]      # pkg-config ends with a space
    assert lines(out, "EXAMPLES-MAKE") == ["0"], lines(out, "EXAMPLES-LOG")
    assert lines(out, "EXAMPLE-BUILT") == [
        "watchdog", "async_epoll", "mmap_probe", "orchestrator"]

    # The GUID source the service found under its hardening.
    journal = lines(out, "JOURNAL")
    assert any("GUID source: fwcfg: " in line
               for line in journal), journal
    assert not any("source tier none" in line for line in journal), journal
    # The unit names no device node the machine lacks: systemd would warn
    # "Couldn't stat device /dev/vmclock0" at every start (the drop-in for
    # it comes from cuse-vmgenid-generator where there is one:
    # tests/restore/test_vmclock_generator.py).
    pid1 = lines(out, "JOURNAL-PID1")
    assert not any("Couldn't stat device" in line for line in pid1), pid1

    # The device answers, and a root caller may FORCE_GEN_UPDATE.
    assert lines(out, "IOCTL") == [
        "ioctl=VMGENID_GET_OUTDATED_WATCHERS ret=0 errno=0"]
    assert lines(out, "NONBLOCK") == ["open", "read ret=-1 value=0 "
                                      "errno=EAGAIN"]
    assert lines(out, "FORCE") == ["ioctl=VMGENID_FORCE_GEN_UPDATE ret=0 "
                                   "errno=0"]
    assert lines(out, "FORCED-READER") == [
        "open", "read ret=4 value=1 errno=0", "exit 0"]
    assert counter(out, "forced") == 1
    # STATUS= follows the figures: the reader's watcher, then the bump.
    assert lines(out, "STATUS-TEXT reader") == [
        "generation 0, 2 watchers, 0 outdated, source fwcfg"]
    refused = "ioctl=VMGENID_FORCE_GEN_UPDATE ret=-1 errno=EACCES"
    assert lines(out, "FORCE-NOBODY") == [refused]
    assert lines(out, "FORCE-USERNS") == [refused]
    assert counter(out, "refused") == 1

    # The restore with a new GUID: one bump by the service's own GUID
    # watcher, and the reader blocked across it woke with it.
    assert counter(out, "restored") == 2
    # The packaged `vmgenid status`, from the service's status file.
    [status] = lines(out, "STATUS")
    assert status == "2 fwcfg hardware", status
    assert lines(out, "RESTORE-READER") == [
        "open", "read ret=4 value=2 errno=0", "exit 0"]
    assert lines(out, "STATUS-TEXT restored") == [
        "generation 2, 1 watchers, 0 outdated, source fwcfg"]
    bumps = [line for line in journal if "generation 1 -> 2" in line]
    assert len(bumps) == 1 and "GUID changed (seen on " in bumps[0], \
        journal
    # The GUID in no log line (docs/interface.rst, Privacy).
    assert not any(g in line for line in journal for g in (first, second))

    # dpkg -i of the build over the release (an upgrade by version): the
    # same process goes on serving (the unit says no restart after
    # upgrade), and nothing bumped.
    assert lines(out, "REINSTALL-DPKG") == ["0"]
    assert lines(out, "VERSION upgraded") == [deb_version(deb)]
    assert lines(out, "VERSION reported") == [
        f"cuse-vmgenid {deb_version(deb)}"]
    reinstalled = shown(out, "reinstalled")
    assert reinstalled["ActiveState"] == "active"
    assert reinstalled["MainPID"] == installed["MainPID"]
    assert counter(out, "reinstalled") == counter(out, "restored")

    # hooks.d: cuse-vmgenid-hooks.service runs beside the daemon, and a
    # hook added ran at the next change without a reload (the daemon has
    # none any more); the one the kernel cannot run is an error, and only
    # errors are at priority err.
    assert lines(out, "HOOKS-UNIT") == ["active"]
    assert lines(out, "RELOAD-RC") != ["0"]
    assert lines(out, "BUMPED") == ["3"]
    hooked = shown(out, "hooked")
    assert (hooked["ActiveState"], hooked["MainPID"]) == (
        "active", installed["MainPID"])
    # A hook's output reaches the journal through the runner's log, one
    # line per line it wrote, under its path (docs/hooks.rst).
    hooks_journal = lines(out, "HOOKS-JOURNAL")
    assert ("cuse-vmgenid-hooks: INFO hook /etc/vmgenid/hooks.d/50-mark: "
            "hook 50-mark ran for generation 3") in hooks_journal, \
        hooks_journal
    errors = lines(out, "JOURNAL-ERR")
    assert any("60-broken (generation 3): not started" in line
               for line in errors), errors
    assert all("ERROR" in line for line in errors), errors

    # systemctl restart: a new process, the counter not lower.
    assert lines(out, "RESTART-RC") == ["0"]
    restarted = shown(out, "restarted")
    assert restarted["ActiveState"] == "active"
    assert restarted["MainPID"] != installed["MainPID"]
    assert counter(out, "restarted") >= counter(out, "restored")
    assert lines(out, "STATUS-TEXT restarted") == [
        f"generation {counter(out, 'restarted')}, 1 watchers, 0 outdated, "
        "source fwcfg"]
    # CUSE_VMGENID_OPTS from /etc/default/cuse-vmgenid took effect.
    assert lines(out, "PAGE-LINK") == ["/run/vmgenid/page"]

    # systemctl stop: a clean exit, and the node gone with the daemon.
    assert lines(out, "STOP-RC") == ["0"]
    stopped = shown(out, "stopped")
    assert (stopped["ActiveState"], stopped["Result"]) == (
        "inactive", "success")
    assert (stopped["ExecMainCode"], stopped["ExecMainStatus"]) == ("1", "0")
    assert lines(out, "NODE-AFTER-STOP") == ["absent"]
    assert lines(out, "DEVICE-UNIT stopped") == ["inactive"]
    assert not any("Traceback" in line for line in journal), journal
