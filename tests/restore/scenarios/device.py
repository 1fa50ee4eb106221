"""The guest side of tests/restore/test_restore_device.py: the daemon
(--source auto) and its clients across real restores driven by the host.

    .venv/bin/python tests/restore/scenarios/device.py main|clones|restart

Each mode prints markers (one line each, parsed by the host) and relays
the daemon's log as "DAEMON <line>"; it says when the host may save
("READY ...", "SAVE1"/"SAVE2") and learns that a restore with a new GUID
happened from its clients waking (or, with the daemon down, from the GUID
in memory).  The host asserts; the guest exits 0 once it ran through,
2 if something it waited for never came (the console says what).
"""

import os
import select
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (SYSCALL_POLL, SYSCALL_PPOLL, SYSCALL_READ,  # noqa: E402
                      Daemon, Relay, blocked_in, errname, guid_source,
                      native, page_counter, say)
from tests.guest.device import (ack, open_device, outdated,  # noqa: E402
                                read_counter, wait_watchers)

KMSG_HINT = r"kernel log: crng reseeded"
POLL_HINT = r"\bGUID poll\b"   # the bump's cause, or a look that found it done
PING_SECONDS = 1.0
HINT_TIMEOUT = 90


def start_reader(prefix: str = "READER") -> Relay:
    """vmgenid-reader -a, blocked in read() on /dev/vmgenid."""
    reader = Relay(prefix, [native("vmgenid-reader"), "-a"])
    reader.wait_line(r"^open$")
    if not blocked_in(reader.proc.pid, (SYSCALL_READ,)):
        raise TimeoutError(f"{prefix} is not blocked in read()")
    return reader


def kernel_driver_bound() -> bool:
    """The kernel's own vmgenid driver serves the device (an ACPI driver
    on 5.18-6.9, a platform driver since 6.10; none before 5.18): only
    then does the kernel log its VM fork line."""
    return any(":" in name
               for bus in ("platform", "acpi")
               for name in (os.listdir(f"/sys/bus/{bus}/drivers/vmgenid")
                            if os.path.isdir(f"/sys/bus/{bus}/drivers/"
                                             "vmgenid") else []))


def wait_hints_after_bump(daemon: Daemon, bump_at: int,
                          live: bool = True) -> None:
    """Every kind of hint after the bump at line @bump_at: NOTIFY and
    SIGUSR1 now, the kernel log (if the kernel's driver is bound) and the
    GUID poll thread (@live False: the change came before the daemon
    started, so neither reports it); each must find the GUID unchanged
    unless it made the bump itself (the host counts the bumps)."""
    kernel_log = [KMSG_HINT] if kernel_driver_bound() else []
    notify = Relay("NOTIFY", [native("vmgenid-ioctl"), "notify"])
    notify.wait()
    daemon.proc.send_signal(signal.SIGUSR1)
    for what in [r"hint \(VMGENID_NOTIFY .*\): GUID unchanged",
                 r"hint \(SIGUSR1\b.*\): GUID unchanged",
                 *([*kernel_log, POLL_HINT] if live else [])]:
        try:
            daemon.wait_line(what, after=bump_at, timeout=HINT_TIMEOUT)
        except TimeoutError as e:
            say("MISSING", e)
    say("HINTS_SEEN")


def orchestrator(results: dict, waiting: threading.Event) -> None:
    """Blocked in read(); once woken: ack, count the outdated watchers,
    WAIT_WATCHERS until the others ack."""
    fd = open_device()
    try:
        results["orch_tid"] = threading.get_native_id()
        value = read_counter(fd)
        say("ORCH woke value=%d" % value)
        ack(fd, value)
        say("ORCH outdated=%d" % outdated(fd))
        waiting.set()
        try:
            ret, err = wait_watchers(fd, 120000), 0
        except OSError as e:
            ret, err = -1, e.errno
        say("ORCH WAIT_WATCHERS ret=%d errno=%s" % (ret, errname(err)))
        say("ORCH outdated=%d" % outdated(fd))
    finally:
        os.close(fd)


def poller(results: dict, waiting: threading.Event) -> None:
    """poll() on its own fd; once woken: read, and ack only after the
    orchestrator waits in WAIT_WATCHERS (so that call must wait for it)."""
    fd = open_device()
    try:
        results["poll_tid"] = threading.get_native_id()
        p = select.poll()
        p.register(fd, select.POLLIN)
        events = p.poll()
        revents = events[0][1] if events else 0
        say("POLLER woke revents=%s" % ("POLLIN" if revents == select.POLLIN
                                        else hex(revents)))
        value = read_counter(fd)
        say("POLLER value=%d" % value)
        if not waiting.wait(120):
            say("POLLER the orchestrator never waited")
        time.sleep(1.0)     # the orchestrator's ioctl reaches the daemon
        say("POLLER acking value=%d" % value)
        ack(fd, value)
        say("POLLER ack value=%d" % value)
    finally:
        os.close(fd)


def ping_until(daemon: Daemon, stop: threading.Event) -> None:
    while not stop.wait(PING_SECONDS):
        daemon.proc.send_signal(signal.SIGUSR1)


def main_scenario() -> int:
    """(a): the host restores with the SAME GUID (nothing may happen),
    then with a new one (one bump: every kind of client wakes)."""
    say("KERNEL_DRIVER", "bound" if kernel_driver_bound() else "none")
    daemon = Daemon.start()
    say("GUID", guid_source().read())
    reader = start_reader()
    results: dict = {}
    waiting = threading.Event()
    threads = [threading.Thread(target=f, args=(results, waiting))
               for f in (poller, orchestrator)]
    for t in threads:
        t.start()
    pid = os.getpid()
    for _ in range(200):
        if "orch_tid" in results and "poll_tid" in results:
            break
        time.sleep(0.05)
    if not (blocked_in(pid, (SYSCALL_READ,), results.get("orch_tid"))
            and blocked_in(pid, (SYSCALL_POLL, SYSCALL_PPOLL),
                           results.get("poll_tid"))):
        say("MISSING a blocked orchestrator or poller")
        return 2
    say("READY counter=%d" % page_counter())

    # The daemon's poll thread says nothing while the GUID stays: SIGUSR1
    # makes it look and log, so the host sees it look after a restore with
    # the same GUID.
    woken = threading.Event()
    pinger = threading.Thread(target=ping_until, args=(daemon, woken))
    pinger.start()
    reader.wait(timeout=3600)       # until the host restores a new GUID
    woken.set()
    pinger.join()
    bump_at = daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    for t in threads:
        t.join(180)
    wait_hints_after_bump(daemon, bump_at)
    say("GUID", guid_source().read())
    say("COUNTER", page_counter())
    daemon.terminate()
    say("DONE")
    return 0


def unbind_kernel_driver() -> None:
    """Detach the kernel's own vmgenid driver: as on a kernel without one
    (before 5.18, CONFIG_VMGENID=n), nothing in the kernel reseeds the RNG
    or logs on a restore; the daemon alone sees the change (its poll)."""
    for bus in ("platform", "acpi"):
        drv = f"/sys/bus/{bus}/drivers/vmgenid"
        for name in (os.listdir(drv) if os.path.isdir(drv) else []):
            if ":" in name:     # a device, as in kernel_driver_bound()
                with open(f"{drv}/unbind", "w") as f:
                    f.write(name)
                say("UNBOUND", f"{drv}/{name}")


def clones_scenario(driver: str = "bound") -> int:
    """(b): the host saves once and restores two clones with different
    GUIDs; in each, the cached secret is regenerated.  @driver "unbound":
    without the kernel's vmgenid driver."""
    if driver == "unbound":
        unbind_kernel_driver()
    daemon = Daemon.start()
    say("GUID", guid_source().read())
    # On one CPU: the kernel's per-CPU RNG state is the same in both clones
    # only for the same CPU (a fair test of "was the RNG reseeded?").
    app = Relay("APP", ["taskset", "-c", "0", sys.executable,
                        "examples/cached_secret.py"])
    app.wait_line(r"^SECRET [0-9a-f]{32}$")
    if not blocked_in(app.proc.pid, (SYSCALL_READ,)):
        say("MISSING the application is not blocked in read()")
        return 2
    reader = start_reader()
    say("READY counter=%d" % page_counter())

    reader.wait(timeout=3600)       # woken in a clone
    daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    app.wait_line(r"^ACK \d+$", timeout=120)
    say("GUID", guid_source().read())
    say("COUNTER", page_counter())
    say("APP_EXIT", app.stop())
    daemon.terminate()
    say("DONE")
    return 0


def restart_scenario() -> int:
    """(c): a same-boot restart before a save (no bump at restart, one
    at the restore); then a restore while the daemon is down (one bump
    when it starts again, from the counter it had)."""
    daemon = Daemon.start()
    source = guid_source()
    say("GUID", source.read())
    daemon.terminate()
    daemon = Daemon.start()         # a same-boot restart
    reader = start_reader()
    say("SAVE1 counter=%d" % page_counter())

    reader.wait(timeout=3600)       # the host restored with a new GUID
    bump_at = daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    guid = source.read()
    say("GUID", guid)
    try:
        daemon.wait_line(KMSG_HINT, after=bump_at, timeout=HINT_TIMEOUT)
        daemon.wait_line(POLL_HINT, after=bump_at, timeout=HINT_TIMEOUT)
    except TimeoutError as e:
        say("MISSING", e)
    daemon.terminate()
    say("SAVE2 counter=%d" % page_counter())

    deadline = time.monotonic() + 3600
    while source.read() == guid:        # the host restores, daemon down
        if time.monotonic() > deadline:
            say("MISSING no new GUID")
            return 2
        time.sleep(0.2)
    say("GUID", source.read())
    time.sleep(2)       # the kernel's vm fork line is logged before start
    daemon = Daemon.start()
    say("PAGE", page_counter())
    bump_at = daemon.mark
    wait_hints_after_bump(daemon, bump_at, live=False)
    say("COUNTER", page_counter())
    daemon.terminate()
    say("DONE")
    return 0


SCENARIOS = {"main": main_scenario, "clones": clones_scenario,
             "restart": restart_scenario}

if __name__ == "__main__":
    try:
        sys.exit(SCENARIOS[sys.argv[1]](*sys.argv[2:]))
    except TimeoutError as e:
        say("MISSING", e)
        sys.exit(2)
