# SPDX-License-Identifier: MIT
"""/dev/vmgenid across REAL restores, driven from the host: the daemon
(--source auto: fw_cfg's GUID address, /dev/mem, the kernel log hint, the
GUID poll thread) turns one new VM Generation ID into exactly one bump, and its
clients see it (docs/interface.rst, "Where changes come from" and "The
restart rule").  The guest side is tests/restore/scenarios/device.py; it
prints markers and relays the daemon's log as "DAEMON <line>".

Run on the host (each test boots its own guest under emulation):
    .venv/bin/python -m pytest -v tests/restore/test_restore_device.py
"""

import re
import uuid

import pytest

from tests.harness.kernels import FLAVOURS
from tests.harness.vm import GuestVM

SCENARIO = [".venv/bin/python", "tests/restore/scenarios/device.py"]
BOOT = 900          # hang rescues only: emulation on a shared host is slow
STEP = 300
GENERATION = re.compile(r"^DAEMON .* generation (\d+) -> (\d+): (.*)$",
                        re.MULTILINE)
SERVING = re.compile(r"^DAEMON .* serving /dev/vmgenid .* at generation "
                     r"(\d+),", re.MULTILINE)


def lines(output: str, prefix: str) -> list[str]:
    """The guest's lines starting with @prefix + " ", without it."""
    return [line[len(prefix) + 1:] for line in output.splitlines()
            if line.startswith(prefix + " ")]


def generations(output: str) -> list[tuple[int, int, str]]:
    return [(int(a), int(b), why) for a, b, why in GENERATION.findall(output)]


def assert_clean(output: str) -> None:
    """The scenario ran through, and the daemon never crashed."""
    assert not lines(output, "MISSING"), lines(output, "MISSING")
    assert "Traceback" not in "\n".join(lines(output, "DAEMON"))
    exits = lines(output, "DAEMON_EXIT")
    assert exits and set(exits) == {"0"}, f"daemon exits: {exits}"
    assert "DONE" in output.splitlines()


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                       r"[0-9a-f]{12}", re.IGNORECASE)


def assert_no_guid(output: str, *guids: str) -> None:
    """No GUID, nor anything spelled like one, in the daemon's log or
    what nobody read."""
    shown = lines(output, "DAEMON") + lines(output, "NOBODY")
    for line in shown:
        assert not UUID_TEXT.search(line), line
        assert not any(g in line.lower() for g in guids), line


def after(output: str, line: str, then: str) -> bool:
    """@then is printed after @line (both whole lines)."""
    all_lines = output.splitlines()
    return all_lines.index(line) < all_lines.index(then)


@pytest.mark.parametrize("kernel", ["6.12", "6.1", "5.10", "newest"])
def test_a_new_guid_bumps_once_and_wakes_reader_poller_and_orchestrator_but_the_same_guid_does_not(  # noqa: E501
        kernel, tmp_path):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with GuestVM(kernel, SCENARIO + ["main"], guid=first) as vm:
        vm.wait_for(r"^READY counter=0$", timeout=BOOT)

        # Same GUID: QEMU rewrites it and notifies; nothing may change.
        snapshot = vm.save(tmp_path / "same.snapshot")
        vm.restore(snapshot, guid=first)
        for _ in range(2):      # the daemon looked after the restore
            vm.wait_for(r"^DAEMON .*hint \(SIGUSR1 .*\): GUID unchanged$",
                        timeout=STEP)
        assert generations(vm.output) == []
        assert not lines(vm.output, "READER")[1:], "woken without a change"
        snapshot.path.unlink()

        snapshot = vm.save(tmp_path / "new.snapshot")
        vm.restore(snapshot, guid=second)
        snapshot.path.unlink()
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)

    # One GUID change, one bump, however many hints (kmsg, poll, NOTIFY,
    # SIGUSR1: the scenario waited for each to find the GUID unchanged).
    [(old, new, why)] = generations(out)
    assert (old, new) == (0, 1)
    assert why.startswith("GUID changed (seen on ")
    assert lines(out, "GUID") == [first, second]
    # The GUID in no log line, and nowhere nobody can read (docs/interface.rst,
    # Privacy): the status file and `vmgenid status`, after the change.
    assert_no_guid(out, first, second)
    nobody = lines(out, "NOBODY")
    assert lines(out, "NOBODY_EXIT") == ["0", "0", "0"], nobody
    assert any(line.strip().rstrip(",") == '"reason": "hardware"'
               for line in nobody), nobody
    assert "generation 1" in nobody, nobody     # `vmgenid status` ran
    assert lines(out, "COUNTER") == ["1"]
    unchanged = [line for line in lines(out, "DAEMON")
                 if "GUID unchanged" in line]
    assert any("SIGUSR1" in line for line in unchanged)
    assert any("VMGENID_NOTIFY" in line for line in unchanged)
    if not FLAVOURS[kernel].vmgenid_driver:     # no kernel line
        assert lines(out, "KERNEL_DRIVER") == ["none"]
        assert not any("kernel log" in line for line in lines(out, "DAEMON"))
        # Seen by the GUID poll thread's timer, or by one of the
        # scenario's SIGUSR1 pings if it came first (bench/restore_latency.py
        # --kernel 5.10 times the poll alone).
        assert re.search(r"seen on GUID poll thread|SIGUSR1", why), why
    else:
        assert lines(out, "KERNEL_DRIVER") == ["bound"]
        assert any("kernel log" in line for line in unchanged) \
            or "kernel log" in why, "the kernel log hint was never seen"
    assert lines(out, "NOTIFY") == ["ioctl=VMGENID_NOTIFY ret=0 errno=0"]

    # The blocked reader, the poller and the orchestrator.
    assert lines(out, "READER") == ["open", "read ret=4 value=1 errno=0",
                                    "ack ret=4 errno=0"]
    assert lines(out, "POLLER") == ["woke revents=POLLIN", "value=1",
                                    "acking value=1", "ack value=1"]
    orch = lines(out, "ORCH")
    assert orch[0] == "woke value=1"
    assert re.fullmatch(r"outdated=[12]", orch[1]), orch
    assert orch[2:] == ["WAIT_WATCHERS ret=0 errno=0", "outdated=0"]
    # WAIT_WATCHERS returned only once the poller began its ack.
    assert after(out, "POLLER acking value=1",
                 "ORCH WAIT_WATCHERS ret=0 errno=0")


# "unbound": the kernel's own vmgenid driver detached in the guest, as on
# kernels without one: only the daemon can make the clones' RNGs differ.
@pytest.mark.parametrize("driver", ["bound", "unbound"],
                         ids=["kernel-driver", "no-kernel-driver"])
def test_two_clones_of_one_snapshot_each_bump_once_and_regenerate_the_cached_secret(  # noqa: E501
        driver, tmp_path):
    original_guid = str(uuid.uuid4())
    with GuestVM("6.12", SCENARIO + ["clones", driver],
                 guid=original_guid) as vm:
        vm.wait_for(r"^READY counter=0$", timeout=BOOT)
        assert bool(lines(vm.output, "UNBOUND")) == (driver == "unbound")
        [original] = [s[len("SECRET "):] for s in lines(vm.output, "APP")
                      if s.startswith("SECRET ")]
        snapshot = vm.save(tmp_path / "clone.snapshot")

    guids = [str(uuid.uuid4()), str(uuid.uuid4())]
    clones = []
    try:
        for guid in guids:      # two at once, from one file
            clones.append(GuestVM.from_snapshot(snapshot, guid=guid))
        for clone in clones:
            clone.wait_for(r"^DONE$", timeout=STEP)
            assert clone.wait_exit(timeout=STEP) == 0
    finally:
        for clone in clones:
            clone.close()
        snapshot.path.unlink()

    secrets = []
    for clone, guid in zip(clones, guids, strict=True):
        out = clone.output
        assert_clean(out)
        [(old, new, why)] = generations(out)
        assert (old, new) == (0, 1)
        assert why.startswith("GUID changed (seen on "), why
        assert_no_guid(out, original_guid, guid)
        # The GUID poll thread published it (state file,
        # page, replies to the application and the reader) before the
        # daemon woke; without the kernel's driver (no crng line), on its
        # timer.  (The main test's SIGUSR1 pings may beat the thread.)
        assert re.search(r"; published by the thread: .*"
                         r"\(2 reads answered\)$", why), why
        assert lines(out, "GUID") == [guid]
        assert lines(out, "COUNTER") == ["1"]
        assert lines(out, "READER") == ["read ret=4 value=1 errno=0",
                                        "ack ret=4 errno=0"]
        app = lines(out, "APP")
        assert app[:3] == ["GENERATION 1", app[1], "ACK 1"], app
        assert re.fullmatch(r"SECRET [0-9a-f]{32}", app[1])
        secrets.append(app[1][len("SECRET "):])
    # Each clone has its own secret, and neither kept the snapshot's: the
    # kernel RNG must be reseeded with the new GUID BEFORE readers wake
    # (a write to /dev/urandom alone reseeds nothing: RNDRESEEDCRNG does).
    assert secrets[0] != secrets[1], (
        f"both clones drew the same new secret {secrets[0]}: the daemon "
        "woke them before the kernel RNG was reseeded")
    assert original not in secrets, (original, secrets)


def test_a_restart_before_a_save_and_a_restore_while_the_daemon_is_down_each_give_one_bump(  # noqa: E501
        tmp_path):
    guids = [str(uuid.uuid4()) for _ in range(3)]
    with GuestVM("6.12", SCENARIO + ["restart"], guid=guids[0]) as vm:
        # Restarted once (same boot, same GUID: no bump), then saved.
        vm.wait_for(r"^SAVE1 counter=0$", timeout=BOOT)
        snapshot = vm.save(tmp_path / "1.snapshot")
        vm.restore(snapshot, guid=guids[1])
        snapshot.path.unlink()
        # The daemon stopped, then saved: it misses the next change.
        vm.wait_for(r"^SAVE2 counter=1$", timeout=STEP)
        snapshot = vm.save(tmp_path / "2.snapshot")
        vm.restore(snapshot, guid=guids[2])
        snapshot.path.unlink()
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)
    assert lines(out, "DAEMON_EXIT") == ["0", "0", "0"]

    gens = generations(out)
    assert [(a, b) for a, b, _ in gens] == [(0, 1), (1, 2)], gens
    assert gens[0][2].startswith("GUID changed (seen on ")
    assert_no_guid(out, *guids)
    assert gens[1][2].startswith("restart: a change may have been missed")
    resumed = re.findall(r"^DAEMON .* same boot: resuming at (\d+)", out,
                         re.MULTILINE)
    assert resumed == ["0", "1"]
    # Never lower: each start serves at least the counter it had.
    assert [int(n) for n in SERVING.findall(out)] == [0, 0, 2]
    assert lines(out, "READER") == ["open", "read ret=4 value=1 errno=0",
                                    "ack ret=4 errno=0"]
    assert lines(out, "GUID") == guids
    assert lines(out, "PAGE") == ["2"]
    assert lines(out, "COUNTER") == ["2"]
    assert lines(out, "NOTIFY") == ["ioctl=VMGENID_NOTIFY ret=0 errno=0"]


# -- under kernel lockdown (what Secure Boot turns on) ----------------------
# /dev/mem is closed, so there is no GUID to read: the kernel-log tier
# serves, one bump per kernel record "crng reseeded due to virtual machine
# fork".  Before the ladder the daemon fell to --source none and a watcher
# slept through the restore (issue 11).

LOCKDOWN = "lockdown=integrity"
KERNEL_LOG_BUMP = re.compile(r"^kernel log record (\d+): random: crng "
                             r"reseeded due to virtual machine fork")


def save_and_restore(vm: GuestVM, path, guid: str) -> None:
    """A real restore: save to @path, restore with @guid, drop the file."""
    snapshot = vm.save(path)
    vm.restore(snapshot, guid=guid)
    snapshot.path.unlink()


def assert_kernel_log_tier(out: str) -> None:
    daemon = "\n".join(lines(out, "DAEMON"))
    assert re.search(r"source tier fwcfg skipped: lockdown: integrity "
                     r"\(the kernel closes /dev/mem", daemon), daemon
    assert "source tier kernel-log (--source auto)" in daemon
    assert "source tier none" not in daemon


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_under_lockdown_a_new_guid_bumps_once_from_the_kernel_log_and_wakes_reader_and_poller_but_the_same_guid_does_not(  # noqa: E501
        kernel, tmp_path):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with GuestVM(kernel, SCENARIO + ["lockdown"], guid=first,
                 kernel_args=LOCKDOWN) as vm:
        vm.wait_for(r"^READY counter=0$", timeout=BOOT)
        save_and_restore(vm, tmp_path / "same.snapshot", first)
        vm.wait_for(r"^SAME_DONE ", timeout=STEP)
        save_and_restore(vm, tmp_path / "new.snapshot", second)
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)
    assert_kernel_log_tier(out)

    # The same GUID: the kernel logged nothing, nothing changed.
    records = [int(n) for n in lines(out, "VMFORK_RECORDS")]
    assert lines(out, "SAME_DONE") == [f"counter=0 records={records[0]}"]
    # The new one: one kernel record, one bump, from that record.
    assert records[1] == records[0] + 1, records
    [(old, new, why)] = generations(out)
    assert (old, new) == (0, 1)
    assert KERNEL_LOG_BUMP.match(why), why
    assert lines(out, "COUNTER") == ["1"]
    assert lines(out, "READER") == ["open", "read ret=4 value=1 errno=0",
                                    "ack ret=4 errno=0"]
    assert lines(out, "POLLER") == ["woke revents=POLLIN", "value=1",
                                    "closed"]
    assert lines(out, "STATUS") == [
        "source=kernel-log guid_available=False unseen=None"] * 2


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_under_lockdown_a_restore_while_the_daemon_is_down_gives_one_bump_at_start_and_a_restart_without_one_none(  # noqa: E501
        kernel, tmp_path):
    with GuestVM(kernel, SCENARIO + ["lockdown-restart"],
                 guid=str(uuid.uuid4()), kernel_args=LOCKDOWN) as vm:
        vm.wait_for(r"^SAVE counter=\d+$", timeout=BOOT)
        save_and_restore(vm, tmp_path / "down.snapshot", str(uuid.uuid4()))
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)
    assert_kernel_log_tier(out)
    assert lines(out, "DAEMON_EXIT") == ["0", "0", "0"]
    assert lines(out, "RESTARTED") == ["counter=0"]   # no change: no bump
    assert lines(out, "SAVE") == ["counter=0"]

    [(old, new, why)] = generations(out)
    assert (old, new) == (0, 1)
    assert re.fullmatch(r"restart: a change may have been missed \(source "
                        r"kernel-log: kernel log record \d+: random: crng "
                        r"reseeded due to virtual machine fork, after record "
                        r"\d+\) "
                        r"\(0 reads answered\)", why), why
    assert lines(out, "PAGE") == ["1"]
    assert lines(out, "COUNTER") == ["1"]
    assert lines(out, "STATUS") == [
        "source=kernel-log guid_available=False unseen=None"]


FLOOD_RESTORES = 3


def test_under_a_kernel_log_flood_by_nobody_each_restore_is_one_bump(
        tmp_path):
    """The event path (6.12, the kernel's driver bound: the GUID poll
    thread has no timer) while nobody floods the kernel's log so that its
    ring overruns: a restore whose VM fork record is overwritten before
    the thread reads it is still seen (the thread wakes on the records
    left and compares the GUID), once."""
    with GuestVM("6.12", SCENARIO + ["flood", str(FLOOD_RESTORES)],
                 guid=str(uuid.uuid4())) as vm:
        vm.wait_for(r"^READY counter=0$", timeout=BOOT)
        for i in range(1, FLOOD_RESTORES + 1):
            save_and_restore(vm, tmp_path / "flood.snapshot",
                             str(uuid.uuid4()))
            vm.wait_for(rf"^WOKE counter={i}$", timeout=STEP)
        vm.wait_for(r"^DONE$", timeout=STEP)
        assert vm.wait_exit(timeout=STEP) == 0
    out = vm.output
    assert_clean(out)
    assert any("GUID source: looked at on event" in line
               for line in lines(out, "DAEMON"))
    # The flood outran a reader: the ring overran while the daemon ran.
    [overruns] = lines(out, "OVERRUNS")
    assert int(overruns) > 0
    # One bump per restore: the watcher woke at 1, 2, 3 (above), and the
    # log's lines chain from 0 to 3.  The thread publishes; the daemon,
    # starved by the flood, may take two publications in one line
    # ("1 -> 3").
    bumps = generations(out)
    assert [b for _, b, _ in bumps][-1] == FLOOD_RESTORES
    assert [a for a, _, _ in bumps] == [0] + [b for _, b, _ in bumps][:-1]
    assert all(a < b for a, b, _ in bumps), bumps
    assert all(why.startswith("GUID changed (seen on ")
               for _, _, why in bumps), bumps
    assert lines(out, "COUNTER") == [str(FLOOD_RESTORES)]
