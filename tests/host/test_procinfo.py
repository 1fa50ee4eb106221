# SPDX-License-Identifier: MIT
"""Process names that are not UTF-8 (issue 12, finding 2): any user can
set one, and the kernel cuts a long name mid-character.  /proc's text is
kept byte for byte (surrogateescape), shown with backslash escapes
(printable.py), never a reason to fail."""

import ctypes
import threading

from cuse_vmgenid.device import privilege
from cuse_vmgenid.device.transport import Caller
from vmgenid import procinfo
from vmgenid.printable import printable

PR_SET_NAME = 15
# The name as read, and as shown.
NAMES = {b"\xff\xfe-vmgenid": ("\udcff\udcfe-vmgenid", "\\xff\\xfe-vmgenid"),
         # 15 of its 22 bytes: the kernel's cut leaves half a character.
         "обновлятель".encode(): ("обновля\udcd1", "обновля\\xd1"),
         b"\x1b]2;PWN\x07\\": ("\x1b]2;PWN\x07\\", "\\x1b]2;PWN\\x07\\\\")}


def in_thread_named(name: bytes, look):
    """look(tid) from outside a thread whose comm is name."""
    named, done, seen = threading.Event(), threading.Event(), {}

    def body():
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
        seen["tid"] = threading.get_native_id()
        named.set()
        done.wait()

    thread = threading.Thread(target=body)
    thread.start()
    try:
        named.wait()
        return look(seen["tid"])
    finally:
        done.set()
        thread.join()


def test_comm_of_a_name_that_is_not_utf8():
    for name, (read, shown) in NAMES.items():
        tid_comm = in_thread_named(name, procinfo.comm)
        assert tid_comm == read
        assert tid_comm.encode(errors="surrogateescape") == name[:15]
        assert printable(tid_comm) == shown


def test_privilege_and_caller_read_such_a_thread():
    for name, (read, shown) in NAMES.items():
        caps = in_thread_named(name, privilege.effective_caps)
        assert isinstance(caps, int)
        text = in_thread_named(name, lambda tid: Caller(tid, 0).describe())
        assert read in text
        assert shown in printable(text)
