# SPDX-License-Identifier: MIT
"""The kernel-log tier (sources/kernellog.py): one bump per kernel VM fork record,
never for a line a process wrote, and the restart rule (the state file's
kmsg_seq).  The rule is C's (native/shim/kmsg.c): the restart rule calls
it through lib, and the poll thread applies it live and publishes.  The
fake /dev/kmsg is a FIFO in packet mode: each write is one record, each
read returns one, as /dev/kmsg does."""

import fcntl
import os
import select

import pytest
from hypothesis import given, strategies as st

from cuse_vmgenid.sources import SourceUnavailable, kernellog
from cuse_vmgenid.sources.kmsg import VMFORK_LINE, KmsgReader
from cuse_vmgenid.sources.kernellog import KernelLogSource, RecordCounter
from cuse_vmgenid.device.statefile import SavedState, StateFile, load
from tests.kmsgrecords import parse_record

from .faces import save_state
from .test_publisher import Setup, req, u32

KERNEL, USER = 0, 1     # facilities: the kernel's, LOG_USER


def record(seq: int, text: bytes = b"eth0: link up",
           facility: int = KERNEL, level: int = 5) -> bytes:
    return (b"%d,%d,%d,-;" % (facility << 3 | level, seq, seq * 1000)
            + text + b"\n")


def vmfork(seq: int, facility: int = KERNEL) -> bytes:
    return record(seq, VMFORK_LINE, facility)


def test_parse_record():
    assert parse_record(vmfork(7)) == (7, True)
    assert parse_record(vmfork(7, USER)) == (7, False)
    assert parse_record(record(8)) == (8, False)
    # The line in a dictionary line, not the text: not the kernel's.
    assert parse_record(b"5,9,0,-;other\n SUBSYSTEM=" + VMFORK_LINE) == \
        (9, False)
    # The kernel's facility, but other levels: not random.c's pr_notice.
    assert parse_record(record(10, VMFORK_LINE, level=6)) == (10, False)
    assert parse_record(record(11, VMFORK_LINE, level=3)) == (11, False)
    # Kernel records that carry a user's text (issue 20): a segfaulting
    # binary so named, a failed mount's option, a prefix or a suffix.
    words = VMFORK_LINE.split(b": ", 1)[1]
    for text in (b"a[1]: segfault at 10 ip 0 sp 0 error 6 in " + words
                 + b"[401000+1000] likely on CPU 0 (core 0, socket 0)",
                 b"tmpfs: Unknown parameter '" + words + b"'",
                 words, b" " + VMFORK_LINE, VMFORK_LINE + b" ",
                 VMFORK_LINE + b"\\x0a", b"x" + VMFORK_LINE):
        assert parse_record(record(12, text, level=3)) == (12, False)
        assert parse_record(record(12, text)) == (12, False), text
    for bad in (b"", b"no header", b"6;x\n", b"x,1,0,-;x\n", b"6,-1,0,-;x"):
        assert parse_record(bad) is None


TEXT = st.binary(max_size=200).filter(lambda b: b"\n" not in b)


@given(facility=st.integers(0, 23), level=st.integers(0, 7),
       seq=st.integers(0, 2 ** 63 - 1), before=TEXT, after=TEXT,
       marked=st.booleans(), flags=st.sampled_from([b"-", b"c", b"-,x"]),
       dictionary=st.binary(max_size=100))
def test_parse_any_kernel_record(facility, level, seq, before, after,
                                 marked, flags, dictionary):
    """Whatever the text around it: the sequence number, and the kernel's
    VM fork record iff facility 0, level 5 (KERN_NOTICE) and the text line
    is the kernel's line, whole."""
    text = before + (VMFORK_LINE if marked else b"") + after
    record = (b"%d,%d,123,%s;" % (facility << 3 | level, seq, flags) + text
              + b"\n" + dictionary)
    assert parse_record(record) == (
        seq, (facility, level) == (0, 5) and text == VMFORK_LINE)


@given(st.binary(max_size=300))
def test_parse_never_trusts_the_text(data):
    """Any bytes: a record or not, never a crash nor a read past the end
    (the host tests may run the shim under ASan)."""
    parsed = parse_record(data)
    assert parsed is None or parsed[0] >= 0
    # A sequence number too big for int64 is no record.
    assert parse_record(b"6,%d,0,-;x" % 2 ** 63) is None


# -- counting (pure) ----------------------------------------------------------

KINDS = st.sampled_from(["chatter", "vmfork", "user-vmfork"])


def build(kinds, first: int) -> list[bytes]:
    make = {"chatter": record, "vmfork": vmfork,
            "user-vmfork": lambda s: vmfork(s, USER)}
    return [make[k](first + i) for i, k in enumerate(kinds)]


# From record 1: "record -1 applied" is no sequence number (-1 is C's
# "none yet", and the kernel's record 0 is its banner).
@given(kinds=st.lists(KINDS, max_size=30), first=st.integers(1, 1000))
def test_live_one_bump_per_kernel_vmfork_record(kinds, first):
    counter = RecordCounter(first - 1)
    reasons = counter.missed(build(kinds, first))
    assert len(reasons) == kinds.count("vmfork")
    assert all(r.startswith("kernel log record ") for r in reasons)
    # Read again (a restart in the same place): nothing new.
    assert counter.missed(build(kinds, first)) == []


@given(kinds=st.lists(KINDS, min_size=1, max_size=30),
       first=st.integers(0, 1000), saved_back=st.integers(-5, 40),
       lost=st.integers(0, 30))
def test_restart_rule(kinds, first, saved_back, lost):
    """The ring holds records first.. (it lost those before); the state
    file says @saved was applied.  A bump iff a kernel VM fork record
    after @saved, or a record after @saved was lost."""
    records = build(kinds, first)
    # A sequence number: never negative (the state file refuses one).
    saved = max(0, first - 1 - lost + saved_back)
    last = first + len(kinds) - 1
    newer_vmfork = any(k == "vmfork" and first + i > saved
                       for i, k in enumerate(kinds))
    gap = first > saved + 1 and last > saved
    counter = RecordCounter(saved)
    missed = counter.missed(records)
    assert bool(missed) == (newer_vmfork or gap)
    assert counter.applied == max(saved, last)


@given(kinds=st.lists(KINDS, max_size=30), first=st.integers(0, 1000))
def test_a_new_boot_counts_from_the_first_record(kinds, first):
    counter = RecordCounter(None)
    counter.missed(build(kinds, first))     # history
    assert counter.applied == (first + len(kinds) - 1 if kinds else None)


def test_a_gap_while_live_is_one_conservative_bump():
    counter = RecordCounter(10)
    assert counter.feed(record(11)) is None
    why = counter.feed(record(15))          # 12-14 overwritten
    assert why and "lost records 12-14" in why
    # A VM fork record right after a gap: one bump, for the record.
    assert counter.feed(vmfork(20)).startswith("kernel log record 20")


# -- the source, on a fake /dev/kmsg -----------------------------------------

@pytest.fixture
def kmsg(tmp_path):
    """(path of the fake /dev/kmsg, write one record)."""
    path = str(tmp_path / "kmsg")
    os.mkfifo(path)
    holder = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # writer may open
    writer = os.open(path, os.O_WRONLY)
    fcntl.fcntl(writer, fcntl.F_SETFL, os.O_DIRECT)      # one record a read
    yield path, lambda data: os.write(writer, data)
    os.close(writer)
    os.close(holder)


def source(path: str) -> KernelLogSource:
    return KernelLogSource(KmsgReader(path, from_start=True),
                           ["platform/QEMUVGID:00"])


def same_boot(seq):
    return SavedState("boot", 3, None, seq)


def test_a_new_boot_bumps_for_nothing_in_the_ring(kmsg):
    path, write = kmsg
    for r in (record(1), vmfork(2), record(3)):
        write(r)
    s = source(path)
    assert s.restart(None) is None
    assert s.mark().kmsg_seq == 3


def test_restart_bumps_once_for_records_after_the_saved_one(kmsg):
    path, write = kmsg
    for r in (record(1), vmfork(2), record(3), vmfork(4), vmfork(5)):
        write(r)
    s = source(path)
    change = s.restart(same_boot(3))
    assert change.why == ("kernel log record 4: " + VMFORK_LINE.decode()
                          + " and 1 more, after record 3")
    assert not change.reseed        # the kernel's driver reseeded
    assert s.mark().kmsg_seq == 5
    assert s.check() is None


def test_restart_with_nothing_new_does_not_bump(kmsg):
    path, write = kmsg
    for r in (record(1), vmfork(2), record(3), vmfork(4, USER)):
        write(r)
    assert source(path).restart(same_boot(2)) is None


def test_restart_after_lost_records_bumps_once(kmsg):
    path, write = kmsg
    for r in (record(10), record(11)):     # the ring lost 1-9
        write(r)
    s = source(path)
    assert "lost records 6-9" in s.restart(same_boot(5)).why


def test_restart_without_a_saved_position_bumps_once(kmsg):
    path, write = kmsg
    write(record(1))
    s = source(path)
    assert "no kernel log position saved" in s.restart(same_boot(None)).why
    assert s.mark().kmsg_seq == 1


# -- live: the poll thread applies the rule and publishes ---------------------

def published(s: KernelLogSource, setup: Setup, count: int):
    """Wait for the thread's wake-ups until @count publications were taken;
    the publications, merged as the daemon takes them."""
    p = select.poll()
    [fd] = s.fds()
    p.register(fd, select.POLLIN)
    taken = []
    while sum(t.count for t in taken) < count:
        assert p.poll(10_000), "the thread published nothing"
        s.ready(fd)
        if (publication := setup.pub.take()) is not None:
            taken.append(publication)
    return taken


def test_live_each_kernel_record_is_one_change_published_by_the_thread(
        kmsg, tmp_path):
    """The thread reads each record, and publishes each kernel VM fork
    record (state file with its sequence number, page, the blocked read
    answered) before the daemon hears of it; a line a process wrote and
    other records are no change."""
    path, write = kmsg
    write(record(1))
    s = source(path)
    setup = Setup(tmp_path, counter=5)
    try:
        s.restart(None)
        setup.pub.wait(req(7), 7, 5)
        s.start(setup.pub)
        for r in (record(2), vmfork(3, USER), vmfork(4)):
            write(r)
        [first] = published(s, setup, 1)
        assert (first.bumped_from, first.counter, first.records,
                first.kmsg_seq, first.lost, first.kernel_log) == (
                    5, 6, 1, 4, False, True)
        assert setup.replies.sent == [(7, u32(6))]
        assert load(setup.state_path).kmsg_seq == 4
        assert setup.page.load() == 6
        assert kernellog.thread_note(first).startswith(
            "kernel log record 4: " + VMFORK_LINE.decode())
        write(vmfork(5))
        write(record(6))
        [second] = published(s, setup, 1)
        assert second.counter == 7
        s.stop()
        assert s.mark().kmsg_seq == 6
        assert s.check() is None        # a hint: nothing to look at here
    finally:
        s.close()
        setup.close()


def test_live_records_lost_unread_are_one_conservative_bump(kmsg, tmp_path):
    """EPIPE: the ring overwrote records before the thread read them, and
    /dev/kmsg goes on from the oldest left; the gap is one bump."""
    path, write = kmsg
    write(record(10))
    s = source(path)
    setup = Setup(tmp_path)
    try:
        s.restart(None)
        s.start(setup.pub)
        write(record(11))
        write(record(15))              # 12-14 lost
        [publication] = published(s, setup, 1)
        assert (publication.counter, publication.lost,
                publication.kmsg_seq) == (1, True, 15)
        assert "lost" in kernellog.thread_note(publication)
    finally:
        s.close()
        setup.close()


def test_after_stop_records_stay_for_the_restart_rule(
        kmsg, tmp_path):
    """The daemon stops: once the thread let go of the publisher, it reads
    no record, so the state file's kmsg_seq is the last record applied,
    and a record after it is the next start's change."""
    path, write = kmsg
    s = source(path)
    setup = Setup(tmp_path)
    try:
        s.restart(None)
        s.start(setup.pub)
        write(record(1))
        write(vmfork(2))
        published(s, setup, 1)
        s.stop()
        write(vmfork(3))
        assert s.mark().kmsg_seq == 2
        assert setup.pub.take() is None
    finally:
        s.close()
        setup.close()
    again = source(path)
    try:
        assert again.restart(same_boot(2)).why.startswith(
            "kernel log record 3: ")
    finally:
        again.close()


def test_the_end_of_the_kernel_log_says_changes_are_unseen(tmp_path):
    """/dev/kmsg fails (here a pipe's writer gone): no busy loop, and the
    status says hardware changes will not be seen."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    s = KernelLogSource(_FdReader(r), ["platform/QEMUVGID:00"])
    setup = Setup(tmp_path)
    try:
        s.start(setup.pub)
        os.close(w)
        p = select.poll()
        [fd] = s.fds()
        p.register(fd, select.POLLIN)
        assert p.poll(10_000)
        s.ready(fd)
        assert s.unseen and "cannot read /dev/kmsg" in s.unseen
        assert setup.pub.take() is None
    finally:
        s.close()
        setup.close()


class _FdReader(KmsgReader):
    def __init__(self, fd: int):
        self._fd = fd


# -- the state file keeps the position ----------------------------------------

def test_state_file_keeps_kmsg_seq_and_loads_old_files(tmp_path):
    path = str(tmp_path / "state")
    sf = StateFile(path, "boot")
    try:
        save_state(sf, 3, None, 2 ** 40)
        assert load(path) == SavedState("boot", 3, None, 2 ** 40)
        save_state(sf, 4, "12345678-9abc-def0-1122-334455667788")
        assert load(path).kmsg_seq is None
    finally:
        sf.close()
    with open(path, "w") as f:      # written before the kernel-log tier
        f.write('{"boot_id": "b", "counter": 9, "guid": null}\n')
    assert load(path) == SavedState("b", 9, None, None)


# -- finding the kernel's driver ----------------------------------------------

def test_bound_devices(tmp_path):
    drivers = tmp_path / "bus"
    for bus in ("acpi", "platform"):
        d = drivers / bus / "drivers" / "vmgenid"
        d.mkdir(parents=True)
        for name in ("bind", "unbind", "uevent"):
            (d / name).write_text("")
        os.symlink("/sys/module/vmgenid", d / "module")
    pattern = str(drivers / "*" / "drivers" / "vmgenid")
    assert kernellog.bound_devices(pattern) == []
    with pytest.raises(SourceUnavailable, match="bound to no"):
        kernellog.open_tier(200, pattern)
    os.symlink("../../../../devices/QEMUVGID:00",
               drivers / "platform" / "drivers" / "vmgenid" / "QEMUVGID:00")
    assert kernellog.bound_devices(pattern) == ["platform/QEMUVGID:00"]
    with pytest.raises(SourceUnavailable, match="cannot read"):
        kernellog.open_tier(200, pattern, str(tmp_path / "no-kmsg"))


def test_the_kernel_logs_every_change_only_where_its_driver_is_bound(
        tmp_path, monkeypatch):
    """The event path's condition: a device bound to the driver, and the
    kernel's RNG initialized (random.c logs nothing before)."""
    d = tmp_path / "bus" / "acpi" / "drivers" / "vmgenid"
    d.mkdir(parents=True)
    (d / "unbind").write_text("")
    pattern = str(tmp_path / "bus" / "*" / "drivers" / "vmgenid")
    assert kernellog.logs_every_change(pattern) is None
    os.symlink("../../../../devices/QEMUVGID:00", d / "QEMUVGID:00")
    assert kernellog.logs_every_change(pattern) == (
        "the kernel's vmgenid driver is bound to acpi/QEMUVGID:00")

    def not_ready(size, flags):
        assert flags & os.GRND_NONBLOCK
        raise BlockingIOError

    monkeypatch.setattr(os, "getrandom", not_ready)
    assert kernellog.logs_every_change(pattern) is None
