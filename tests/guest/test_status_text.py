# SPDX-License-Identifier: MIT
"""What `vmgenid status` and the daemon's log show of other users' text
(issue 20, items 7 and 10): a process name reaches root's terminal and
the log escaped (printable.py), never as the bytes a terminal would obey;
and a user whose outdated watchers did not all make the daemon's list is
told how many more it holds.

nobody names its processes, as any user can; root looks.
"""

import json
import os
import re
import subprocess
import sys

from .device import REPO, force_from_elsewhere
from .processes import HANG, NOBODY, Child
from .test_hostile import HOLD_WITH_NAME, SYSTEM_PYTHON
from .test_privacy import public_dir, start  # noqa: F401 (a fixture)
from .tool_run import VMGENID, wait_status

# Hides what follows it and sets the terminal's title (13 bytes: the
# kernel keeps 15).
HOSTILE = b"\x1b[8m\x1b]2;PWN\x07"
# A backslash, a newline, a byte that is not UTF-8.
TRICKY = b"a\\x41\nb\x9bc"
SHOWN = {HOSTILE: "\\x1b[8m\\x1b]2;PWN\\x07",
         TRICKY: "a\\\\x41\\x0ab\\x9bc"}


def control_bytes(raw: bytes) -> list:
    """What a terminal would act on, line breaks aside: C0 controls,
    DEL, and the C1 controls (CSI is 0x9b) as bytes or as UTF-8."""
    text = raw.decode(errors="surrogateescape")
    return [c for c in text if (ord(c) < 0x20 and c != "\n")
            or 0x7F <= ord(c) < 0xA0 or 0xDC80 <= ord(c) < 0xDD00]


def vmgenid_raw(prefix: tuple, daemon, *args) -> bytes:
    """`vmgenid ARGS` as who prefix says, its output as bytes (exit 7:
    these daemons serve --source none)."""
    done = subprocess.run([*prefix, *VMGENID, *args], cwd=REPO,
                          capture_output=True, timeout=HANG,
                          env=dict(os.environ, VMGENID_STATUS=daemon.status,
                                   VMGENID_PAGE=daemon.page))
    assert done.returncode == 7, (prefix, done.stdout, done.stderr)
    return done.stdout


def named_holder(name: bytes) -> Child:
    """nobody's process named name (prctl PR_SET_NAME), holding a
    watcher it never acknowledges."""
    holder = Child([*NOBODY, SYSTEM_PYTHON, "-c", HOLD_WITH_NAME,
                    name.hex(), "hold"], stdin=True)
    assert holder.line() == "open"
    return holder


def test_process_names_reach_terminals_and_the_log_escaped(
        public_dir, daemon_factory, tmp_path):  # noqa: F811
    d = start(daemon_factory, public_dir, tmp_path)
    with named_holder(HOSTILE) as hostile, named_holder(TRICKY) as tricky:
        force_from_elsewhere()
        wait_status(d, lambda s: s["outdated"] == 2, "2 outdated")
        for who in ((), NOBODY):        # root's list, and nobody's own
            out = vmgenid_raw(who, d, "status")
            assert control_bytes(out) == [], (who, out)
            text = out.decode()
            for holder, name in ((hostile, HOSTILE), (tricky, TRICKY)):
                assert (f"  outdated: pid {holder.pid} ({SHOWN[name]}) uid "
                        "65534, acknowledged 0") in text.splitlines(), \
                    (who, text)
            # The JSON is JSON: controls escaped by it, the names exact.
            out = vmgenid_raw(who, d, "status", "--json")
            assert control_bytes(out) == [], (who, out)
            names = {w["pid"]: w["comm"].encode(errors="surrogateescape")
                     for w in json.loads(out)["outdated_watchers"]}
            assert names == {hostile.pid: HOSTILE, tricky.pid: TRICKY}

    # The log names the caller of a bump: root's process, named by
    # whoever chose the file it runs.
    done = subprocess.run([sys.executable, "-c", HOLD_WITH_NAME,
                           HOSTILE.hex(), "force"], capture_output=True,
                          text=True, timeout=HANG, cwd=REPO)
    assert done.stdout == "force 0\n", done.stderr
    with open(d.log_path, "rb") as f:
        log = f.read()
    assert control_bytes(log) == []
    assert re.search(rf"FORCE_GEN_UPDATE by pid \d+ "
                     rf"\({re.escape(SHOWN[HOSTILE])}\) uid 0",
                     log.decode()), log


HOLD_MANY = """
import os, sys
fds = [os.open("/dev/vmgenid", os.O_RDWR) for _ in range(int(sys.argv[1]))]
print("open", flush=True)
sys.stdin.read()
"""
LISTED = 256    # daemon.py's MAX_LISTED_WATCHERS


def test_a_users_cut_list_says_how_many_more_it_holds(public_dir,
                                                      daemon_factory,
                                                      tmp_path):  # noqa: F811
    """Root's watchers, opened first, fill the daemon's list of the
    oldest outdated; nobody's three come after: nobody's `vmgenid status`
    lists none of them and says so."""
    d = start(daemon_factory, public_dir, tmp_path)
    root = Child([SYSTEM_PYTHON, "-c", HOLD_MANY, LISTED], stdin=True)
    with root:
        assert root.line() == "open"        # all of root's first
        with Child([*NOBODY, SYSTEM_PYTHON, "-c", HOLD_MANY, 3],
                   stdin=True) as nobody:
            assert nobody.line() == "open"
            force_from_elsewhere()
            wait_status(d, lambda s: s["outdated"] == LISTED + 3,
                        f"{LISTED + 3} outdated")
            lines = vmgenid_raw(NOBODY, d, "status").decode().splitlines()
            assert "  (listed: your own outdated watchers only)" in lines
            assert not [line for line in lines if "outdated: pid" in line]
            assert "  ... and 3 more" in lines, lines
            lines = vmgenid_raw((), d, "status").decode().splitlines()
            assert len([line for line in lines
                        if "outdated: pid" in line]) == LISTED
            assert "  ... and 3 more" in lines, lines
