# SPDX-License-Identifier: MIT
"""The daemon's VMClock-ABI page (docs/interface.rst, "The page"): its layout
against the ABI, the seqlock update, its life as a file, and the link that
never shadows a real device."""

import mmap
import os
import stat
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuse_vmgenid.device.vmclockpage import VmclockPage, page_path

from . import vmclock_abi as abi

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(REPO, os.environ.get("VMGENID_NATIVE_BUILD",
                                          os.path.join("native", "build")))
READER = os.path.join(BUILD, "vmclock-reader")


def contents(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_the_page_is_laid_out_as_the_abi_says(tmp_path):
    path = str(tmp_path / "vmclock")
    VmclockPage(path, 5)
    data = contents(path)
    assert len(data) == 4096
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert abi.get(data, "magic") == abi.MAGIC
    assert abi.get(data, "size") == 4096
    assert abi.get(data, "version") == 1
    assert abi.get(data, "counter_id") == abi.COUNTER_INVALID
    assert abi.get(data, "clock_status") == abi.STATUS_UNKNOWN
    assert abi.get(data, "flags") == abi.FLAG_VM_GEN_COUNTER_PRESENT
    assert abi.get(data, "vm_generation_counter") == 5
    assert abi.get(data, "seq_count") % 2 == 0


def test_each_change_moves_the_counter_marker_and_seq_count(tmp_path):
    path = str(tmp_path / "vmclock")
    page = VmclockPage(path, 0)
    before = contents(path)
    assert page.store(1) is True
    after = contents(path)
    assert abi.get(after, "vm_generation_counter") == 1
    assert abi.get(after, "disruption_marker") == \
        abi.get(before, "disruption_marker") + 1
    assert abi.get(after, "seq_count") == abi.get(before, "seq_count") + 2
    # The daemon stores at every start: the same counter changes nothing.
    assert page.store(1) is False
    assert contents(path) == after


def test_the_file_is_kept_across_daemons(tmp_path):
    path = str(tmp_path / "vmclock")
    VmclockPage(path, 0).store(3)
    inode = os.stat(path).st_ino
    with open(path, "rb") as f:     # a library's mapping of it
        mapped = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    again = VmclockPage(path, 3)    # a restarted daemon
    assert os.stat(path).st_ino == inode
    assert abi.get(mapped, "vm_generation_counter") == 3
    again.store(4)
    assert abi.get(mapped, "vm_generation_counter") == 4
    mapped.close()



def test_a_page_replaced_by_mv_is_put_back_laid_out(tmp_path):
    path = str(tmp_path / "vmclock")
    page = VmclockPage(path, 0)
    page.store(3)
    with open(path, "rb") as f:     # a library's mapping of it
        early = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    new = tmp_path / "new"
    new.write_bytes(bytes(4096))
    os.rename(new, path)
    assert "replaced" in page.replaced()
    assert contents(path) == bytes(early)      # the whole layout, copied
    page.store(4)
    for data in (contents(path), early):
        assert abi.get(data, "vm_generation_counter") == 4
        assert abi.get(data, "seq_count") % 2 == 0
    assert page.replaced() is None
    early.close()

def test_a_page_without_the_layout_is_laid_out(tmp_path):
    path = tmp_path / "vmclock"
    VmclockPage(str(path), 0)
    os.chmod(path, 0o644)
    path.write_bytes(bytes(4096))   # e.g. zeros from an interrupted start
    VmclockPage(str(path), 9)
    assert abi.get(contents(path), "magic") == abi.MAGIC
    assert abi.get(contents(path), "vm_generation_counter") == 9


def test_a_reader_never_sees_a_torn_update():
    """The seqlock, in C (native/tests/vmclock-seqlock.c): the daemon's
    writer stores millions of counters while two threads read; each store
    moves the counter and the marker together, so a read that mixed two
    updates shows.  (Without the odd seq_count while writing it reports
    millions of torn reads.)"""
    helper = os.path.join(BUILD, "vmclock-seqlock")
    if not os.access(helper, os.X_OK):
        pytest.fail(f"{helper} missing: run `make -C native` first")
    proc = subprocess.run([helper], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " torn=0 " in proc.stdout, proc.stdout


def test_its_path_is_beside_the_counter_page():
    assert page_path("/run/vmgenid/page") == "/run/vmgenid/vmclock"


# -- the link -------------------------------------------------------------

def test_the_link_is_a_symlink_to_the_page_and_kept(tmp_path):
    page = VmclockPage(str(tmp_path / "vmclock"), 0)
    link = tmp_path / "vmclock0"
    page.link(str(link))
    page.link(str(link))            # a restart: its own link, kept
    assert os.readlink(link) == page.path


@pytest.mark.parametrize("what", ["file", "foreign symlink"])
def test_the_link_replaces_nothing(tmp_path, what):
    page = VmclockPage(str(tmp_path / "vmclock"), 0)
    link = tmp_path / "vmclock0"
    if what == "file":
        link.write_text("someone's")
    else:
        os.symlink("/somewhere/else", link)
    with pytest.raises(FileExistsError, match="left alone"):
        page.link(str(link))
    if what == "file":
        assert link.read_text() == "someone's"
    else:
        assert os.readlink(link) == "/somewhere/else"


def test_a_real_device_is_never_shadowed(tmp_path):
    """A character device at the path (here /dev/null stands in for the
    kernel's /dev/vmclock0) is refused and left as it was."""
    page = VmclockPage(str(tmp_path / "vmclock"), 0)
    before = os.lstat("/dev/null")
    with pytest.raises(FileExistsError, match="character device"):
        page.link("/dev/null")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


# -- the C reader of native/tests, in the published spec's style ----------

def run_reader(path) -> tuple[int, str]:
    if not os.access(READER, os.X_OK):
        pytest.fail(f"{READER} missing: run `make -C native` first")
    proc = subprocess.run([READER, "-d", str(path)], capture_output=True,
                          text=True, timeout=30)
    return proc.returncode, proc.stdout.strip()


def test_the_spec_reader_reads_the_daemons_page(tmp_path):
    path = tmp_path / "vmclock"
    VmclockPage(str(path), 0).store(7)
    rc, out = run_reader(path)
    assert rc == 0, out
    fields = dict(kv.split("=") for kv in out.split()[1:])
    assert fields["vm_generation_counter"] == "7"
    assert int(fields["seq_count"]) % 2 == 0
    assert fields["counter_id"] == "255" and fields["clock_status"] == "0"
    assert int(fields["flags"], 16) == abi.FLAG_VM_GEN_COUNTER_PRESENT


@pytest.mark.parametrize("change,rc,line", [
    ({"magic": 0x12345678}, 1, "bad magic=0x12345678"),
    ({"flags": 0}, 2, "no generation counter flags=0"),
    ({"seq_count": 3}, 3, "torn seq_count=3"),
])
def test_the_spec_reader_bails_out(tmp_path, change, rc, line):
    page = abi.device_page(counter=4)
    for name, value in change.items():
        abi.put(page, name, value)
    path = tmp_path / "vmclock0"
    path.write_bytes(page)
    assert run_reader(path) == (rc, line)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_any_stores_leave_the_last_counter_and_count_each_change(counters):
    with tempfile.TemporaryDirectory() as folder:
        page = VmclockPage(os.path.join(folder, "vmclock"), 0)
        start = contents(page.path)
        changes, last = 0, 0
        for n in counters:
            assert page.store(n) is (n != last)
            changes += n != last
            last = n
        now = contents(page.path)
    assert abi.get(now, "vm_generation_counter") == last
    assert abi.get(now, "disruption_marker") == \
        abi.get(start, "disruption_marker") + changes
    assert abi.get(now, "seq_count") == \
        abi.get(start, "seq_count") + 2 * changes
    # The constant fields never move.
    assert now[:12] == start[:12]
    assert abi.get(now, "flags") == abi.FLAG_VM_GEN_COUNTER_PRESENT
