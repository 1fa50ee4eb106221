# SPDX-License-Identifier: MIT
"""The page survives a careless admin (issue 12, finding 5): cut short
under the daemon's mapping, it is repaired in place at the next store (no
SIGBUS), and at start it is repaired or replaced, never refused."""

import logging
import mmap
import os
import struct
import threading

from cuse_vmgenid.page import PAGE_SIZE, Page


def mapped(path):
    """A client's read-only mapping of the page."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(fd)


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
