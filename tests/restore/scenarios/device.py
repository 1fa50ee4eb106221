# SPDX-License-Identifier: MIT
"""The guest side of tests/restore/test_restore_device.py: the daemon
(--source auto) and its clients across real restores driven by the host.

    .venv/bin/python tests/restore/scenarios/device.py \
        main|clones|restart|lockdown|lockdown-restart|flood N

Each mode prints markers (one line each, parsed by the host) and relays
the daemon's log as "DAEMON <line>"; it says when the host may save
("READY ...", "SAVE1"/"SAVE2") and learns that a restore with a new GUID
happened from its clients waking (or, with the daemon down, from the GUID
in memory).  The host asserts; the guest exits 0 once it ran through,
2 if something it waited for never came (the console says what).
"""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guestlib import (SYSCALL_POLL, SYSCALL_PPOLL, SYSCALL_READ,  # noqa: E402
                      Daemon, Relay, blocked_in, errname, native,
                      page_counter, say)
from cuse_vmgenid.sources import fwcfg  # noqa: E402
from tests.guest.device import (ack, open_device, outdated,  # noqa: E402
                                read_counter, wait_watchers)

KMSG_HINT = r"kernel log: random: crng reseeded"
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


STATUS = "/run/vmgenid/status.json"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def show_as_nobody(counter: int) -> None:
    """What nobody reads once the status shows @counter: the status file
    and `vmgenid status` (plain and --json), as "NOBODY <line>"."""
    for _ in range(600):
        try:
            with open(STATUS) as f:
                if json.load(f)["counter"] == counter:
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    tool = [sys.executable, "-m", "vmgenid", "status"]
    for argv in (["cat", STATUS], tool, tool + ["--json"]):
        done = subprocess.run(NOBODY + argv, capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(
                                  os.path.dirname(os.path.abspath(
                                      __file__)))))
        for line in (done.stdout + done.stderr).splitlines():
            say("NOBODY", line)
        say("NOBODY_EXIT", done.returncode)


def main_scenario() -> int:
    """(a): the host restores with the SAME GUID (nothing may happen),
    then with a new one (one bump: every kind of client wakes)."""
    say("KERNEL_DRIVER", "bound" if kernel_driver_bound() else "none")
    daemon = Daemon.start()
    say("GUID", fwcfg.mapped_guid().read())
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
    say("GUID", fwcfg.mapped_guid().read())
    say("COUNTER", page_counter())
    show_as_nobody(page_counter())
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
    say("GUID", fwcfg.mapped_guid().read())
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
    say("GUID", fwcfg.mapped_guid().read())
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
    source = fwcfg.mapped_guid()
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


# -- under kernel lockdown: no /dev/mem, so no GUID; the kernel-log tier ---

STATUS = "/run/vmgenid/status.json"
SCI_COUNT = "/sys/firmware/acpi/interrupts/sci"


def sci_count() -> int:
    """ACPI interrupts so far: QEMU's vmgenid notify (_GPE._E05) is one."""
    with open(SCI_COUNT) as f:
        return int(f.read().split()[0])


def kernel_vmfork_records() -> list[int]:
    """The sequence numbers of the kernel's VM fork records in the ring."""
    from cuse_vmgenid.sources.kmsg import KmsgReader
    from tests.kmsgrecords import is_vmfork_record, parse_record
    with KmsgReader(from_start=True) as reader:
        records = []
        while (record := reader.read_record()) is not None:
            records.append(record)
    return [parse_record(r)[0] for r in records if is_vmfork_record(r)]


def status_when(counter: int, timeout: float = 120) -> dict:
    """The status file once it shows @counter."""
    import json
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(STATUS) as f:
                status = json.load(f)
            if status["counter"] == counter:
                return status
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no status with counter {counter}")
        time.sleep(0.1)


def say_status(counter: int) -> None:
    status = status_when(counter)
    say("STATUS source=%s guid_available=%s unseen=%s" % (
        status["source"]["name"], status["source"]["guid_available"],
        status["source"].get("unseen")))


def wait_vmfork_record(before: list[int], deadline: float) -> bool:
    """Until the kernel logs a VM fork record not in @before (the host
    restored with a new GUID); False if none came by @deadline."""
    while kernel_vmfork_records() == before:
        if time.monotonic() > deadline:
            say("MISSING no VM fork record after the restore")
            return False
        time.sleep(0.2)
    return True


def finish_under_lockdown(daemon: Daemon) -> int:
    """After the one bump: the status, no more bumps once the daemon read
    every record, the counts for the host."""
    say_status(1)
    looked_after(daemon)
    say("VMFORK_RECORDS", len(kernel_vmfork_records()))
    say("COUNTER", page_counter())
    daemon.terminate()
    say("DONE")
    return 0


def looked_after(daemon: Daemon) -> None:
    """SIGUSR1: the daemon looked, and found nothing new (its poll thread
    reads the kernel's records as they come; since 53263e5 a source
    without a GUID logs "no change")."""
    mark = daemon.mark
    daemon.proc.send_signal(signal.SIGUSR1)
    daemon.wait_line(r"hint \(SIGUSR1\b.*\): no change", after=mark)


def mount_securityfs() -> None:
    """As systemd does: the daemon reads the lockdown mode there."""
    if not os.path.exists("/sys/kernel/security/lockdown"):
        subprocess.run(["mount", "-t", "securityfs", "securityfs",
                        "/sys/kernel/security"], check=True)


def watch(daemon: Daemon) -> None:
    """Every 20 s, where the daemon's threads are (a hang says where)."""
    def loop() -> None:
        while daemon.proc.poll() is None:
            time.sleep(20)
            for tid in os.listdir(f"/proc/{daemon.proc.pid}/task"):
                try:
                    with open(f"/proc/{daemon.proc.pid}/task/{tid}/stat"
                              ) as f:
                        stat = f.read().rsplit(")", 1)[1].split()
                    with open(f"/proc/{daemon.proc.pid}/task/{tid}/"
                              "syscall") as f:
                        syscall = f.read().split()[0]
                except OSError:
                    continue
                say("WATCH tid=%s state=%s utime=%s syscall=%s"
                    % (tid, stat[0], stat[11], syscall))
    threading.Thread(target=loop, daemon=True).start()


def lockdown_scenario() -> int:
    """(d) under lockdown=integrity: the host restores with the SAME GUID
    (the kernel compares and logs nothing: no bump), then with a new one
    (its one VM fork record: one bump; the reader and a poller wake)."""
    mount_securityfs()
    daemon = Daemon.start()
    watch(daemon)
    say("VMFORK_RECORDS", len(kernel_vmfork_records()))
    reader = start_reader()
    woke: dict = {}

    def poll_once() -> None:
        fd = open_device()
        try:
            woke["poll_tid"] = threading.get_native_id()
            p = select.poll()
            p.register(fd, select.POLLIN)
            events = p.poll()
            say("POLLER woke revents=%s" % (
                "POLLIN" if events and events[0][1] == select.POLLIN
                else events))
            say("POLLER value=%d" % read_counter(fd))
        finally:
            os.close(fd)
            say("POLLER closed")

    poll_thread = threading.Thread(target=poll_once)
    poll_thread.start()
    for _ in range(200):
        if "poll_tid" in woke:
            break
        time.sleep(0.05)
    if not blocked_in(os.getpid(), (SYSCALL_POLL, SYSCALL_PPOLL),
                      woke.get("poll_tid")):
        say("MISSING a blocked poller")
        return 2
    say_status(0)
    sci = sci_count()
    say("READY counter=%d" % page_counter())

    # The host restores with the same GUID: QEMU notifies, the kernel's
    # driver compares (its work runs after the interrupt) and logs nothing.
    deadline = time.monotonic() + 3600
    while sci_count() == sci:
        if time.monotonic() > deadline:
            say("MISSING no ACPI notify after the same-GUID restore")
            return 2
        time.sleep(0.2)
    time.sleep(2)
    records = kernel_vmfork_records()   # before the host may save again
    say("SAME_DONE counter=%d records=%d" % (page_counter(), len(records)))

    # The host restores with a new GUID: the kernel logs its record.
    if not wait_vmfork_record(records, deadline):
        return 2
    try:
        reader.wait(timeout=120)
    except subprocess.TimeoutExpired:
        say("MISSING the blocked reader slept through the restore (the "
            "kernel logged its VM fork record)")
        return 2
    poll_thread.join(180)
    daemon.wait_line(r"generation \d+ -> \d+", timeout=60)
    return finish_under_lockdown(daemon)


def lockdown_restart_scenario() -> int:
    """(e) under lockdown=integrity: a same-boot restart (no change: no
    bump); then the host restores with a new GUID while the daemon is
    down: started again, it bumps once."""
    mount_securityfs()
    daemon = Daemon.start()
    daemon.terminate()
    daemon = Daemon.start()
    say("RESTARTED counter=%d" % page_counter())
    daemon.terminate()
    before = kernel_vmfork_records()
    say("SAVE counter=%d" % page_counter())

    if not wait_vmfork_record(before, time.monotonic() + 3600):
        return 2
    daemon = Daemon.start()
    say("PAGE", page_counter())
    return finish_under_lockdown(daemon)


# nobody, in a user namespace of its own, floods the kernel's log: each
# mount(2) with an option tmpfs does not know makes the kernel log
# "tmpfs: Unknown parameter '...'" (a kernel record, no rate limit).
FLOODER = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
i = 0
while True:
    libc.mount(b"none", b"/tmp", b"tmpfs", 0,
               b"cuse-vmgenid-flood-%09d-" % i + b"x" * 64)
    i += 1
"""


def count_overruns(stop: threading.Event, results: dict) -> None:
    """A reader of /dev/kmsg that reads once a second: EPIPE each time the
    ring overran between two reads (the flood outpaced it)."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.lseek(fd, 0, os.SEEK_END)
    try:
        while not stop.wait(1.0):
            while True:
                try:
                    os.read(fd, 8192)
                except BlockingIOError:
                    break
                except BrokenPipeError:
                    results["overruns"] += 1
    finally:
        os.close(fd)


def flood_scenario(restores: str) -> int:
    """(e): while nobody floods the kernel log, so that its ring overruns
    and records (the kernel's VM fork line among them) may be lost before
    the daemon's thread reads them, the host restores @restores times with
    a new GUID: each is one bump, none is missed."""
    # The flood's records stay off the serial console.
    subprocess.run(["dmesg", "-n", "1"], check=True)
    daemon = Daemon.start()
    flooder = subprocess.Popen(
        NOBODY + ["unshare", "--user", "--map-root-user", "--mount",
                  "/usr/bin/python3", "-c", FLOODER],
        stdin=subprocess.DEVNULL)
    results = {"overruns": 0}
    stop = threading.Event()
    probe = threading.Thread(target=count_overruns, args=(stop, results))
    probe.start()
    time.sleep(2)
    if flooder.poll() is not None:
        say("MISSING the flooder exited %d" % flooder.returncode)
        return 2
    fd = open_device()      # up to date: read() waits for a change
    try:
        say("READY counter=%d" % page_counter())
        for _ in range(int(restores)):
            counter = read_counter(fd)      # until the host restores
            ack(fd, counter)
            say("WOKE counter=%d" % counter)
    finally:
        os.close(fd)
    flooder.kill()
    flooder.wait()
    stop.set()
    probe.join()
    say("OVERRUNS", results["overruns"])
    say("COUNTER", page_counter())
    daemon.terminate()
    say("DONE")
    return 0


SCENARIOS = {"main": main_scenario, "clones": clones_scenario,
             "restart": restart_scenario, "lockdown": lockdown_scenario,
             "lockdown-restart": lockdown_restart_scenario,
             "flood": flood_scenario}

if __name__ == "__main__":
    try:
        sys.exit(SCENARIOS[sys.argv[1]](*sys.argv[2:]))
    except TimeoutError as e:
        say("MISSING", e)
        sys.exit(2)
