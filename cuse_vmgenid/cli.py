# SPDX-License-Identifier: MIT
"""`cuse-vmgenid`: run the daemon in the foreground (for systemd)."""

import argparse
import logging
import sys

from .journal import PriorityFormatter, is_journal
from .printable import Formatter
from .sources import SOURCE_CHOICES
from .version import __version__

LOG_FORMAT = "cuse-vmgenid: %(levelname)s %(message)s"


def _mode(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"bad mode {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="cuse-vmgenid",
        description="Serve /dev/vmgenid (VM Generation ID) through CUSE.")
    p.add_argument("--devname", default="vmgenid",
                   help="node name under /dev (default: %(default)s)")
    p.add_argument("--page", default="/run/vmgenid/page",
                   help="the counter page file (default: %(default)s)")
    p.add_argument("--page-link", metavar="PATH",
                   help="also expose the page at PATH, as a symlink (for "
                        "libraries that map a file, e.g. /dev/sysgenid)")
    p.add_argument("--vmclock-link", metavar="PATH",
                   help="also keep the counter in a VMClock-ABI page "
                        "beside --page and expose it at PATH, as a symlink "
                        "(for libraries that map /dev/vmclock0); a real "
                        "VMClock device there is left alone")
    p.add_argument("--state", default="/run/vmgenid/state",
                   help="the state file (default: %(default)s)")
    p.add_argument("--status", default="/run/vmgenid/status.json",
                   help="the status file `vmgenid status` reads, mode 0644; "
                        "'' for none (default: %(default)s)")
    p.add_argument("--hooks-dir", default="/etc/vmgenid/hooks.d",
                   help="executables run on each change, in name order; "
                        "missing = no hooks (default: %(default)s)")
    p.add_argument("--hook-timeout", type=_seconds, default=60.0,
                   help="seconds a hook may run before it is killed "
                        "(default: %(default)s)")
    p.add_argument("--mode", type=_mode, default=0o666,
                   help="node mode, octal (default: 0666)")
    p.add_argument("--source", choices=SOURCE_CHOICES, default="auto",
                   help="where changes come from: auto takes the first "
                        "tier that works, best first (default: auto)")
    p.add_argument("--poll-interval-ms", type=int, default=100,
                   help="how often a C thread compares the GUID in memory "
                        "(default: %(default)s)")
    p.add_argument("--max-watchers-per-uid", type=int, default=1024,
                   help="open files per uid, uid 0 exempt "
                        "(default: %(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--fuse-debug", action="store_true",
                   help="libfuse's own request trace (-d)")
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {__version__}")
    return p.parse_args(argv)


def main(argv=None) -> int:
    options = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PriorityFormatter(LOG_FORMAT)
                         if is_journal(sys.stderr)
                         else Formatter(LOG_FORMAT))
    logging.basicConfig(level=options.log_level.upper(), handlers=[handler])
    from .daemon import Daemon  # after logging: it logs while starting
    from .session import SessionError
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
