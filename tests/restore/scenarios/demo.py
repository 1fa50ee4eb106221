# SPDX-License-Identifier: MIT
"""The guest side of tools/demo.py (`make demo`): the daemon (--source
auto), a watcher blocked in read() (vmgenid-reader -a), a slower watcher
in poll() (it acks a second after the orchestrator starts waiting) and an
orchestrator (blocked in read() too; once woken it acks and waits in
WAIT_WATCHERS for the others).  "READY" once they block; the host then
saves the VM and restores it with a new VM Generation ID.

Markers: "DAEMON <log line>", "GUID <guid>", "WATCHER <line>",
"POLLER <line>", "ORCH <line>", "COUNTER <n>", "DAEMON_EXIT <rc>", "DONE".
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device import orchestrator, poller, start_reader  # noqa: E402
from guestlib import (SYSCALL_POLL, SYSCALL_PPOLL, SYSCALL_READ,
                      Daemon, blocked_in,  # noqa: E402
                      page_counter, say)
from cuse_vmgenid.sources import fwcfg  # noqa: E402


def main() -> int:
    daemon = Daemon.start("--log-level", "info")
    say("GUID", fwcfg.mapped_guid().read())
    watcher = start_reader("WATCHER")
    results: dict = {}
    waiting = threading.Event()
    threads = [threading.Thread(target=f, args=(results, waiting))
               for f in (poller, orchestrator)]
    for t in threads:
        t.start()
    for _ in range(200):
        if "orch_tid" in results and "poll_tid" in results:
            break
        time.sleep(0.05)
    if not (blocked_in(os.getpid(), (SYSCALL_READ,), results.get("orch_tid"))
            and blocked_in(os.getpid(), (SYSCALL_POLL, SYSCALL_PPOLL),
                           results.get("poll_tid"))):
        say("MISSING the orchestrator or the poller is not blocked")
        return 2
    say("READY counter=%d" % page_counter())

    watcher.wait(timeout=3600)      # until the host restores the VM
    for t in threads:
        t.join(180)
    daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    say("GUID", fwcfg.mapped_guid().read())
    say("COUNTER", page_counter())
    daemon.terminate()
    say("DONE")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TimeoutError as e:
        say("MISSING", e)
        sys.exit(2)
