# SPDX-License-Identifier: MIT
"""The ranges of the command-line values of cuse-vmgenid and
cuse-vmgenid-hooks, each defined once here, as vmgenid.options defines
the tool's (and Range, the parser and the help's span, which all the
commands share).

Each is an argparse `type=`: a value outside its range ends the command at
parse time, before anything is opened, with exit status 2 and one line
(`prog: error: argument --x: ...`, see OneLineParser).  --help shows the
range (Range.span), and tests/host/test_manpages.py checks that the manual
pages and README state the same span.
"""

import argparse
import os
import re

from vmgenid.options import ONE_DAY_S, Range, path

from .. import safefiles

# -- cuse-vmgenid-hooks -----------------------------------------------------

# A hook running longer than a day is hung: the next change waits for it.
HOOK_TIMEOUT = Range(0.001, ONE_DAY_S, "a number of seconds", integer=False)

# -- cuse-vmgenid -----------------------------------------------------------

# The GUID thread's timer (an unsigned int of ms in C); a day at most.
POLL_INTERVAL_MS = Range(1, ONE_DAY_S * 1000, "a number of milliseconds")
# The state machine keeps the cap in an unsigned int.  0 is refused: a cap
# of no watcher would lock every user but root out of the device (a node
# only root may use is --mode 0600).
MAX_WATCHERS_PER_UID = Range(1, 0xFFFFFFFF, "a number of watchers")
# The node's permission bits: no setuid, setgid or sticky bit.
MODE = Range(0, 0o777, "an octal mode", base=8, octal=True)

# A name under /dev: CUSE's DEVNAME becomes the device's kobject name ('/'
# turned into '!') and devtmpfs turns '!' back into '/' for the node, so
# neither may appear; the chrdev region keeps 63 characters of it
# (/proc/devices).  A leading '.' or '-' is refused too ('.', '..', hidden
# names, names read as options).
DEVNAME_MAX = 63
DEVNAME_RULE = (f"1 to {DEVNAME_MAX} characters of A-Z a-z 0-9 _ . + -, "
                "not starting with . or -")
_DEVNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def devname(text: str) -> str:
    if len(text) > DEVNAME_MAX or not _DEVNAME.fullmatch(text):
        shown = text if len(text) <= DEVNAME_MAX else text[:DEVNAME_MAX] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not a name under /dev: {DEVNAME_RULE}")
    return text


def daemon_file(text: str) -> str:
    """--page, --state: a path whose name is not shaped like the state
    file's temporary files (.NAME.<12 hex digits>.new), which a start
    removes when no daemon holds them."""
    text = path(text)
    if safefiles.is_some_unique_name(os.path.basename(text)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is named like a temporary file of the daemon "
            "(.NAME.<12 hex digits>.new), which a start may remove")
    return text
