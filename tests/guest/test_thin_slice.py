# SPDX-License-Identifier: MIT
"""The whole pipeline once: the daemon serves, FORCE bumps, read answers."""

import os
import stat

from .device import ack, force, open_device, read_counter


def test_node_is_a_char_device_with_mode_0666(daemon):
    st = os.stat("/dev/vmgenid")
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666


def test_read_after_force_returns_new_counter(daemon):
    fd = open_device()
    try:
        force(fd)
        assert read_counter(fd) == 1
        assert ack(fd, 1) == 4
    finally:
        os.close(fd)
