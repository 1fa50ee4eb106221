#!/usr/bin/env python3
"""The main job, run inside the guest: serve /dev/vmgenid, block a watcher
in read(), change the generation, and show the watcher wake with the new
counter, acknowledge it, and the orchestrator's WAIT_WATCHERS return.

The change here is VMGENID_FORCE_GEN_UPDATE: the GUID watcher that turns a
real VM restore into a change is not written yet (issue 3).
"""

import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.guest.daemon_process import DaemonProcess  # noqa: E402
from tests.guest.device import (force, native, open_device,  # noqa: E402
                                 outdated, read_counter, wait_watchers)


def main() -> int:
    with tempfile.TemporaryDirectory() as workdir:
        daemon = DaemonProcess(workdir).start()
        print("demo: daemon serving /dev/vmgenid", flush=True)
        try:
            watcher = subprocess.Popen([native("vmgenid-reader"), "-a"],
                                       stdout=subprocess.PIPE, text=True)
            print(f"demo: watcher says: {watcher.stdout.readline().strip()}"
                  " (now blocked in read)", flush=True)
            fd = open_device()
            force(fd)
            print(f"demo: generation changed to {read_counter(fd)}; "
                  f"outdated watchers: {outdated(fd)}", flush=True)
            os.write(fd, read_counter(fd).to_bytes(4, sys.byteorder))
            print(f"demo: WAIT_WATCHERS returned {wait_watchers(fd, 30000)}"
                  f" (every watcher acknowledged); outdated watchers: "
                  f"{outdated(fd)}", flush=True)
            out, _ = watcher.communicate(timeout=60)
            for line in out.splitlines():
                print(f"demo: watcher says: {line}", flush=True)
            os.close(fd)
            ok = watcher.returncode == 0 and "value=1" in out
        finally:
            daemon.stop()
        print("demo: daemon log:\n" + daemon.log(), flush=True)
        print("demo: " + ("OK" if ok else "FAILED"), flush=True)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
