#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The main job, for real (`make demo`): a VM is saved and restored with a
new VM Generation ID, and a program blocked on /dev/vmgenid learns it.

Boots a Linux 6.12 guest under QEMU (a squashfs block root, so that it
can be saved), where tests/restore/scenarios/demo.py starts the daemon
(--source auto: the GUID's address from fw_cfg, the GUID mapped from
/dev/mem, the kernel log as a hint), a watcher blocked in read(), a slower
one in poll(), and an orchestrator.  Then, as a hypervisor would, it
stops the VM, migrates it to a file, and restores it in a new QEMU with a
new GUID.  It shows, in
lines starting with "demo:", the daemon seeing the new GUID, the watcher
woken with the new counter and acknowledging it, and the orchestrator's
WAIT_WATCHERS returning.  Exit 0 only if all of that happened.

    .venv/bin/python tools/demo.py [-v]     (-v: the guest console too)
"""

import argparse
import io
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.cache import HarnessError  # noqa: E402
from tests.harness.vm import GuestVM  # noqa: E402

KERNEL = "6.12"
SCENARIO = [".venv/bin/python", "tests/restore/scenarios/demo.py"]
TIMEOUT = 900


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def narrate(line: str) -> None:
    """One guest marker line, told for humans (others are skipped)."""
    kind, _, rest = line.partition(" ")
    if kind == "DAEMON":
        say(f"  daemon log | {rest}")
    elif kind == "WATCHER":
        if rest == "open":
            say("watcher (vmgenid-reader -a) opened /dev/vmgenid; "
                "it is blocked in read(); so is the orchestrator, and a "
                "slow watcher waits in poll()")
        elif rest.startswith("read "):
            say(f"watcher woken: {rest}")
        elif rest.startswith("ack "):
            say(f"watcher acknowledged the new counter: {rest}")
        else:
            say(f"watcher: {rest}")
    elif kind == "POLLER":
        if rest.startswith("woke"):
            say(f"slow watcher woken from poll() ({rest[5:]})")
        elif rest.startswith("value="):
            say(f"slow watcher read {rest}; it acknowledges only once the "
                "orchestrator waits")
        elif rest.startswith("acking"):
            say(f"slow watcher acknowledges ({rest[7:]})")
        elif not rest.startswith("ack "):
            say(f"slow watcher: {rest}")
    elif kind == "ORCH":
        if rest.startswith("woke"):
            say(f"orchestrator woken ({rest}), acknowledged it")
        elif rest.startswith("outdated="):
            say(f"orchestrator: GET_OUTDATED_WATCHERS says "
                f"{rest[len('outdated='):]} watcher(s) still outdated")
        elif rest.startswith("WAIT_WATCHERS"):
            say(f"orchestrator: {rest}: every watcher has acknowledged")
        else:
            say(f"orchestrator: {rest}")
    elif kind == "GUID":
        say(f"VM Generation ID in guest memory: {rest}")
    elif kind == "COUNTER":
        say(f"counter in the daemon's page: {rest}")
    elif kind == "DAEMON_EXIT":
        say(f"daemon stopped with SIGTERM, exit {rest}")
    elif kind == "MISSING":
        say(f"MISSING: {rest}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the guest console as well")
    args = p.parse_args()
    console = sys.stdout if args.verbose else io.StringIO()
    before, after = str(uuid.uuid4()), str(uuid.uuid4())

    say(f"booting a Linux {KERNEL} guest under QEMU with VM Generation ID "
        f"{before} (emulated: a minute or two)")
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="vmgenid-demo-") as tmp, \
                GuestVM(KERNEL, SCENARIO, guid=before, out=console) as vm:
            vm.wait_for(r"^READY counter=0$", timeout=TIMEOUT)
            say(f"guest up in {time.monotonic() - started:.0f} s")
            for line in vm.output.splitlines():
                narrate(line)

            snapshot = vm.save(Path(tmp) / "guest.snapshot")
            say(f"saved the VM: QMP stop, migrate to a file "
                f"({snapshot.size >> 20} MiB in {snapshot.save_seconds:.1f}"
                " s); that QEMU quit")
            say(f"restoring it in a new QEMU with VM Generation ID {after}")
            vm.restore(snapshot, guid=after)
            restored_at = len(vm.output)
            say("restored and running (QMP cont)")
            vm.wait_for(r"^DONE$", timeout=TIMEOUT)
            rc = vm.wait_exit(timeout=TIMEOUT)
    except HarnessError as e:
        say(f"FAILED: {e}")
        return 1
    out = vm.output
    for line in out[restored_at:].splitlines():
        narrate(line)

    bumps = re.findall(r"^DAEMON .* generation (\d+) -> (\d+): (.*)$", out,
                       re.MULTILINE)
    checks = {
        # The log says the GUID changed, never what it is (interface.rst,
        # Privacy): only the demo itself, as root, reads it from memory.
        "the daemon bumped exactly once, 0 -> 1, for the new GUID":
            len(bumps) == 1 and bumps[0][:2] == ("0", "1")
            and bumps[0][2].startswith("GUID changed")
            and not any(after in line for line in out.splitlines()
                        if line.startswith("DAEMON ")),
        "the watcher was woken with counter 1":
            "WATCHER read ret=4 value=1 errno=0" in out,
        "the watcher acknowledged it": "WATCHER ack ret=4 errno=0" in out,
        "the slow watcher was woken from poll() and acknowledged":
            "POLLER woke revents=POLLIN" in out
            and "POLLER ack value=1" in out,
        "WAIT_WATCHERS returned 0":
            "ORCH WAIT_WATCHERS ret=0 errno=0" in out,
        "no watcher left outdated after it":
            re.findall(r"^ORCH (outdated=\d+)$", out, re.MULTILINE)[-1:]
            == ["outdated=0"],
        "the daemon exited 0 on SIGTERM": "DAEMON_EXIT 0" in out,
        "the guest scenario exited 0": rc == 0,
    }
    failed = [what for what, ok in checks.items() if not ok]
    for what in failed:
        say(f"FAILED: {what}")
    if failed and not args.verbose:
        say("the guest console:\n" + out)
    say(("OK: " if not failed else "FAILED: ")
        + f"{sum(map(bool, checks.values()))}/{len(checks)} checks, "
        f"{time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
