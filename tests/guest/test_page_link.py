# SPDX-License-Identifier: MIT
"""--page-link: the page at a second path, as a symlink, for libraries that
map a plain file (AWS-LC stat()s, opens and mmaps /dev/sysgenid)."""

import mmap
import os
import struct

from .device import bump


def mapped_counter(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            return struct.unpack_from("=I", m)[0]
    finally:
        os.close(fd)


def test_page_link_is_a_symlink_to_the_page_and_maps(daemon_factory,
                                                      tmp_path):
    link = str(tmp_path / "sysgenid")
    daemon = daemon_factory("--page-link", link)
    assert os.path.islink(link)
    assert os.readlink(link) == daemon.page
    assert mapped_counter(link) == 0
    assert bump() == 1
    assert mapped_counter(link) == 1


def test_page_link_leaves_an_existing_file_alone(daemon_factory, tmp_path):
    path = tmp_path / "sysgenid"
    path.write_bytes(b"not ours")
    daemon = daemon_factory("--page-link", str(path))
    assert path.read_bytes() == b"not ours"
    assert "no page link" in daemon.log()
    assert bump() == 1  # and the daemon serves all the same
