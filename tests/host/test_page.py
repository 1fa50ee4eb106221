# SPDX-License-Identifier: MIT
"""The page survives a careless admin (issue 12, finding 5): cut short
under the daemon's mapping, it is repaired in place at the next store (no
SIGBUS), and at start it is repaired or replaced, never refused."""

import logging
import mmap
import os
import struct
import threading

import pytest

from cuse_vmgenid.device.page import MAX_FILES, PAGE_SIZE, Page


def mapped(path):
    """A client's read-only mapping of the page."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(fd)


def descriptors_in(folder) -> list[str]:
    """This process's open descriptors of files in @folder (or removed
    from it)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue        # listdir's own
        if target.startswith(f"{folder}/"):
            found.append(target)
    return found


def value(client):
    return struct.unpack("=I", client[:4])[0]


def test_store_repairs_a_truncated_page_in_place(tmp_path, caplog):
    page = Page(str(tmp_path / "page"))
    client = mapped(page.path)
    inode = os.stat(page.path).st_ino
    for cut in (0, 2, 4095):
        os.truncate(page.path, cut)
        with caplog.at_level(logging.ERROR):
            page.store(cut + 7)
        st = os.stat(page.path)
        assert (st.st_ino, st.st_size) == (inode, PAGE_SIZE)
        assert value(client) == cut + 7 and page.load() == cut + 7
    assert sum("cut shorter" in r.message for r in caplog.records) == 3


def test_truncation_racing_the_stores_never_kills(tmp_path):
    """A truncation between the size check and the store: the SIGBUS is
    caught in C, the size restored and the store done again."""
    page = Page(str(tmp_path / "page"))
    client = mapped(page.path)
    stop = threading.Event()

    def cut():
        while not stop.is_set():
            os.truncate(page.path, 0)

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        for n in range(1, 20001):
            page.store(n)
    finally:
        stop.set()
        cutter.join()
    page.store(20001)
    assert value(client) == 20001


def test_short_page_at_start_is_repaired_not_refused(tmp_path, caplog):
    path = str(tmp_path / "page")
    Page(path).store(0x01020304)
    inode = os.stat(path).st_ino
    os.truncate(path, 2)            # the low half of the counter is left
    with caplog.at_level(logging.ERROR):
        page = Page(path)
    assert not page.created
    assert os.stat(path).st_ino == inode
    assert os.stat(path).st_size == PAGE_SIZE
    assert page.load() == 0x01020304 & 0xFFFF
    assert "shorter than one page" in caplog.text


def test_symlink_at_the_page_is_replaced_not_followed(tmp_path, caplog):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 10)
    path = tmp_path / "page"
    os.symlink(victim, path)
    with caplog.at_level(logging.ERROR):
        page = Page(str(path))
    page.store(9)
    assert victim.read_bytes() == b"x" * 10
    assert not path.is_symlink() and page.created and page.load() == 9
    assert "not a regular file" in caplog.text


@pytest.mark.parametrize("owner, mode", [(65534, 0o444), (0, 0o666),
                                         (0, 0o464)])
def test_a_page_others_could_write_is_replaced_not_read(tmp_path, caplog,
                                                         owner, mode):
    """A restart may resume from a page ahead of the state file, so a page
    someone but the daemon could have written is never taken: its value
    is not read, and a new page of the daemon's own replaces it."""
    path = tmp_path / "page"
    path.write_bytes(struct.pack("=I", 1000) + bytes(PAGE_SIZE - 4))
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    theirs = os.stat(path)
    with caplog.at_level(logging.ERROR):
        page = Page(str(path))
    assert page.created and page.load() == 0
    mine = os.stat(path)
    assert mine.st_ino != theirs.st_ino
    assert (mine.st_uid, mine.st_mode & 0o777) == (0, 0o444)
    assert path.read_bytes()[:4] == bytes(4)
    assert "its value is not taken" in caplog.text


# -- a page replaced at its path (issue 20, item 6) --------------------------

def replace_by_mv(path, content=b"\0" * PAGE_SIZE):
    """What a careless admin does: a new file renamed over the page."""
    new = f"{path}.admin"
    with open(new, "wb") as f:
        f.write(content)
    os.rename(new, path)


def test_a_page_replaced_by_mv_is_put_back_and_every_file_sees_stores(
        tmp_path):
    page = Page(str(tmp_path / "page"))
    page.store(3)
    early = mapped(page.path)           # a program that mapped it first
    replace_by_mv(page.path)
    assert value(mapped(page.path)) == 0

    line = page.replaced()
    assert "replaced by another file" in line and "(3)" in line
    st = os.stat(page.path)
    assert (st.st_size, st.st_mode & 0o777) == (PAGE_SIZE, 0o444)
    late = mapped(page.path)            # a program that maps it now
    assert value(late) == 3 and page.load() == 3
    page.store(4)
    assert (value(early), value(late)) == (4, 4)
    assert page.replaced() is None
    assert sorted(os.listdir(tmp_path)) == ["page"]     # no temp left
    # At the daemon's end: every file it wrote closed and unmapped, the
    # one at its path left holding the last counter for the next start.
    early.close()
    late.close()
    assert descriptors_in(tmp_path)
    page.close()
    assert descriptors_in(tmp_path) == []
    assert value(mapped(page.path)) == 4


def test_a_removed_page_is_put_back(tmp_path):
    page = Page(str(tmp_path / "page"))
    page.store(7)
    early = mapped(page.path)
    os.unlink(page.path)
    assert "removed" in page.replaced()
    page.store(8)
    assert value(mapped(page.path)) == 8 and value(early) == 8


def test_a_symlink_put_at_the_page_is_replaced_not_followed(tmp_path):
    page = Page(str(tmp_path / "page"))
    page.store(2)
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 10)
    link = tmp_path / "link"
    os.symlink(victim, link)
    os.rename(link, page.path)
    assert "not a regular file" in page.replaced()
    page.store(3)
    assert victim.read_bytes() == b"x" * 10
    assert not os.path.islink(page.path)
    assert value(mapped(page.path)) == 3


def test_what_cannot_be_put_back_is_raised_once_and_the_page_serves_on(
        tmp_path):
    page = Page(str(tmp_path / "page"))
    early = mapped(page.path)
    os.unlink(page.path)
    os.mkdir(page.path)
    (tmp_path / "page" / "x").write_bytes(b"")     # rename cannot replace
    try:
        page.replaced()
    except OSError as e:
        assert "cannot be put back" in str(e)
    else:
        raise AssertionError("a folder at the page's path went unnoticed")
    assert page.replaced() is None      # the same folder: logged already
    page.store(5)
    assert value(early) == 5 and page.load() == 5
    assert sorted(os.listdir(tmp_path)) == ["page"]


def test_past_max_files_the_oldest_file_is_let_go_and_logged(tmp_path,
                                                             caplog):
    page = Page(str(tmp_path / "page"))
    first = mapped(page.path)
    maps = []
    for n in range(MAX_FILES):
        replace_by_mv(page.path)
        with caplog.at_level(logging.ERROR):
            assert page.replaced() is not None
        maps.append(mapped(page.path))
        page.store(n + 1)
    assert "replaced more than" in caplog.text
    assert value(first) == MAX_FILES - 1       # let go before the last
    assert [value(m) for m in maps] == [MAX_FILES] * MAX_FILES
