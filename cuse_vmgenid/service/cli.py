# SPDX-License-Identifier: MIT
"""`cuse-vmgenid`: run the daemon in the foreground (for systemd)."""

import argparse
import logging
import sys

from vmgenid.options import OneLineParser, with_span
from vmgenid.status import DEFAULT_PATH as DEFAULT_STATUS

from .journal import log_to_stderr
from .options import (DEVNAME_RULE, MAX_WATCHERS_PER_UID, MODE,
                      POLL_INTERVAL_MS, daemon_file, devname)
from ..sources import SOURCE_CHOICES
from ..version import __version__

LOG_FORMAT = "cuse-vmgenid: %(levelname)s %(message)s"
# Options of cuse-vmgenid-hooks the daemon took before it (0.1.0).
MOVED_OPTIONS = ("--hooks-dir", "--hook-timeout")


def parse_args(argv=None) -> argparse.Namespace:
    # Every value is checked here, before anything is opened (options.py).
    p = OneLineParser(
        prog="cuse-vmgenid",
        description="Serve /dev/vmgenid (VM Generation ID) through CUSE.")
    p.add_argument("--devname", type=devname, default="vmgenid",
                   metavar="NAME",
                   help=f"node name under /dev: {DEVNAME_RULE} "
                        "(default: %(default)s)")
    p.add_argument("--page", type=daemon_file, default="/run/vmgenid/page",
                   help="the counter page file (default: %(default)s)")
    p.add_argument("--page-link", metavar="PATH",
                   help="also expose the page at PATH, as a symlink (for "
                        "libraries that map a file, e.g. /dev/sysgenid); "
                        "'' for none")
    p.add_argument("--vmclock-link", metavar="PATH",
                   help="also keep the counter in a VMClock-ABI page "
                        "beside --page and expose it at PATH, as a symlink "
                        "(for libraries that map /dev/vmclock0); a real "
                        "VMClock device there is left alone; '' for none")
    p.add_argument("--state", type=daemon_file, default="/run/vmgenid/state",
                   help="the state file (default: %(default)s)")
    p.add_argument("--status", default=DEFAULT_STATUS,
                   help="the status file `vmgenid status` reads, mode 0644; "
                        "'' for none (default: %(default)s)")
    p.add_argument("--mode", type=MODE, default=0o666,
                   help=with_span("node mode, octal", MODE)
                   + " (default: 0666)")
    p.add_argument("--source", choices=SOURCE_CHOICES, default="auto",
                   help="where changes come from: auto takes the first "
                        "tier that works, best first (default: auto)")
    p.add_argument("--poll-interval-ms", type=POLL_INTERVAL_MS, default=100,
                   metavar="MS",
                   help=with_span("how often a C thread compares the GUID "
                                  "in memory", POLL_INTERVAL_MS)
                   + " (default: %(default)s)")
    p.add_argument("--max-watchers-per-uid", type=MAX_WATCHERS_PER_UID,
                   default=1024, metavar="N",
                   help=with_span("open files per uid, uid 0 exempt",
                                  MAX_WATCHERS_PER_UID)
                   + " (default: %(default)s)")
    # The hooks' options from before cuse-vmgenid-hooks: taken, so that an
    # /etc/default/cuse-vmgenid kept across the upgrade does not stop the
    # daemon at the next boot, then named in the log as ignored.
    for option in MOVED_OPTIONS:
        p.add_argument(option, dest=moved_dest(option), metavar="VALUE",
                       help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--fuse-debug", action="store_true",
                   help="libfuse's own request trace (-d)")
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {__version__}")
    return p.parse_args(argv)


def moved_dest(option: str) -> str:
    return "moved_" + option[2:].replace("-", "_")


def moved_options(options: argparse.Namespace) -> list[str]:
    """One log line per option given that moved to cuse-vmgenid-hooks."""
    return [f"{option} is ignored: hooks.d runs in cuse-vmgenid-hooks "
            "now (cuse-vmgenid-hooks.service; its options go in "
            "CUSE_VMGENID_HOOKS_OPTS)" for option in MOVED_OPTIONS
            if getattr(options, moved_dest(option)) is not None]


def main(argv=None) -> int:
    options = parse_args(argv)
    log_to_stderr(LOG_FORMAT, options.log_level)
    for line in moved_options(options):
        logging.getLogger("cuse_vmgenid").warning("%s", line)
    from .daemon import Daemon  # after logging: it logs while starting
    from ..device.session import SessionError
    try:
        return Daemon(options).serve()
    except (OSError, ValueError, SessionError) as e:
        logging.getLogger("cuse_vmgenid").error("fatal: %s", e)
        return 1
    except Exception as e:
        # A bug: named in one line, with the traceback after it.
        logging.getLogger("cuse_vmgenid").critical(
            "fatal: unexpected %s: %s", type(e).__name__, e, exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
