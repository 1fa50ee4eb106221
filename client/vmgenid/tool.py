# SPDX-License-Identifier: MIT
"""`vmgenid`: look at and use /dev/vmgenid from a shell.

Every device call goes through the vmgenid package's API, which follows
the client rule (docs/interface.rst).
"""

import argparse
import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from typing import Optional

import vmgenid as client

from . import procinfo
from .options import (DESCRIPTOR, GENERATION, WAIT_TIMEOUT, OneLineParser,
                      path, with_span)
from .printable import printable
from .status import (DEFAULT_PATH, STATUS_SCHEMA, watcher_file,
                     watchers_dir)
from .version import __version__

STATUS = os.environ.get("VMGENID_STATUS", DEFAULT_PATH)

EXIT_OK = 0
EXIT_ERROR = 1          # the device or the status file failed
EXIT_USAGE = 2          # argparse's own
EXIT_TIMEOUT = 3        # wait --timeout: no change in time
EXIT_NOT_RUNNING = 3    # status: the daemon is not running (as LSB's)
EXIT_DENIED = 4         # bump: EACCES
EXIT_CHANGED_AGAIN = 5  # ack GENERATION: the counter moved on; wait again
EXIT_REOPEN = 6         # --fd: its daemon went away; a change may have
                        # happened: reopen the descriptor
EXIT_UNSEEN = 7         # status: the daemon has no source tier, hardware
                        # changes will not be seen
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C), as a shell reports it

EPILOG = f"""\
exit codes:
  {EXIT_OK}  done
  {EXIT_ERROR}  error (message on stderr): no device, a status file of
     another version, ...
  {EXIT_USAGE}  usage error
  {EXIT_TIMEOUT}  wait --timeout: no change (or no device) within the timeout;
     status: the daemon is not running (no status file, or a stale one)
  {EXIT_DENIED}  bump: permission denied (needs CAP_CHECKPOINT_RESTORE or
     CAP_SYS_ADMIN in the daemon's user namespace)
  {EXIT_CHANGED_AGAIN}  ack GENERATION: the generation changed again; wait again
  {EXIT_REOPEN}  --fd N: the daemon behind descriptor N went away; treat it as
     a change and reopen the descriptor (open_vmgenid below)
  {EXIT_UNSEEN}  status: the daemon serves with no source tier (--source none):
     hardware changes (snapshot restores, clones) will not be seen
  {EXIT_INTERRUPTED}  interrupted (SIGINT, Ctrl-C)

A shell script keeps its own watcher open across calls, and opens it
again when the daemon restarts (exit 6; watch --exec does all this):
  open_vmgenid() {{    # fd 3, read-write; never "3<>/dev/vmgenid", which
      command exec 3</dev/vmgenid &&    # makes a plain file in /dev (as
      command exec 3<>/proc/self/fd/3   # root) while the node is missing
  }}
  open_vmgenid || exit 1
  while :; do
      gen=$(vmgenid wait --fd 3)      # blocks until a change
      case $? in
      0)  reseed "$gen"
          vmgenid ack --fd 3 "$gen"   # 5: changed again, 6: daemon gone:
          case $? in 0|5|6) ;; *) break ;; esac ;;  # the next wait says so
      6)  # The daemon went away (restart): a change may have happened.
          until open_vmgenid; do sleep 1; done
          reseed restart ;;
      *)  break ;;
      esac
  done
"""


class Failure(Exception):
    """A message for stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


class NoDeviceFailure(Failure):
    """No node: no daemon serves the device (not within the timeout)."""


# -- status -------------------------------------------------------------

def load_status(path: str) -> dict:
    try:
        with open(path) as f:
            status = json.load(f)
    except FileNotFoundError:
        raise Failure(f"no status file {path}: cuse-vmgenid is not running "
                      "(or runs without --status)", EXIT_NOT_RUNNING) \
            from None
    except (OSError, ValueError) as e:
        raise Failure(f"unreadable status file {path}: {e}") from None
    schema = status.get("schema") if isinstance(status, dict) else None
    if schema != STATUS_SCHEMA:
        raise Failure(f"status file {path} has schema {schema}, this vmgenid "
                      f"reads schema {STATUS_SCHEMA}: the running daemon is "
                      "another version (after an upgrade: systemctl restart "
                      "cuse-vmgenid when convenient)")
    return status


def load_watchers(status_path: str) -> tuple[list[dict], bool, int]:
    """(the outdated watchers the caller may see, whether they are only
    the caller's, how many of its own are outdated): root reads the list
    of all; anyone else its own (cut as the daemon cut it, with its
    count), and of that only the processes /proc shows it as its own
    (hidepid)."""
    uid = os.geteuid()
    path = watcher_file(watchers_dir(status_path), None if uid == 0 else uid)
    try:
        with open(path) as f:
            content = json.load(f)
        watchers = list(content["outdated_watchers"])
        own_outdated = len(watchers) if uid == 0 \
            else int(content["outdated"])
        if uid != 0:
            watchers = [w for w in watchers if _shown_to_me(w)]
    except FileNotFoundError:
        watchers = []           # none outdated (or no daemon: the status
        own_outdated = 0        # says so)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Failure(f"unreadable watcher list {path}: {e!r}") from None
    return watchers, uid != 0, own_outdated


def _shown_to_me(watcher: dict) -> bool:
    """Whether /proc shows the caller this watcher's process as its own;
    its command name as /proc gives it now."""
    try:
        if os.stat(f"/proc/{watcher['pid']}").st_uid != os.geteuid():
            return False
    except OSError:
        return False
    name = procinfo.comm(watcher["pid"])
    if name is None:
        return False
    watcher["comm"] = name
    return True


def daemon_running(status: dict) -> bool:
    """Whether the process that wrote status still runs: its pid is
    alive and started when the daemon did (not a reused pid)."""
    pid = status["daemon_pid"]
    started = procinfo.start_time(pid)
    if started is not None:
        return started == status["daemon_start"]
    try:
        os.kill(pid, 0)     # no /proc/<pid>/stat to read: alive at least
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def format_status(status: dict) -> list[str]:
    """The lines of `vmgenid status`, raw: they hold other users' text
    (process names), so they are printed only through show()."""
    unseen = status["source"].get("unseen")
    lines = [f"WARNING: {unseen}"] if unseen else []
    lines += [f"generation {status['counter']}",
             f"device {status['device']}, page {status['page']}",
             f"watchers {status['watchers']}, "
             f"outdated {status['outdated']}"]
    if status["only_own_watchers"]:
        lines.append("  (listed: your own outdated watchers only)")
    for w in status["outdated_watchers"]:
        who = f"pid {w['pid']} ({w['comm'] or 'gone'}) uid {w['uid']}"
        lines.append(f"  outdated: {who}, acknowledged "
                     f"{w['acknowledged']}")
    unlisted = status["outdated"] - len(status["outdated_watchers"])
    if status["only_own_watchers"]:
        unlisted = status["own_outdated"] - len(status["outdated_watchers"])
    if unlisted > 0:
        lines.append(f"  ... and {unlisted} more")
    source = status["source"]
    # "event": something tells of a change; "poll": looked at every
    # interval (a daemon before this field said neither).
    detection = source.get("detection")
    lines.append(f"source {source['name']} (GUID "
                 f"{'available' if source['guid_available'] else 'none'}"
                 f"{', change seen on ' + detection if detection else ''})")
    change = status["last_change"]
    if change:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z",
                             time.localtime(change["time"]))
        lines.append(f"last change {when}: {change['from']} -> "
                     f"{change['to']}, {change['reason']}")
    else:
        lines.append("last change: none since the daemon started")
    pid = status["daemon_pid"]
    lines.append(f"daemon pid {pid} "
                 f"({'running' if daemon_running(status) else 'NOT running'})")
    return lines


def show(lines: list[str], file=None) -> None:
    """Print lines, each escaped (printable.py): a process name or a
    hook's name can hold any bytes, escape sequences too."""
    print("\n".join(printable(line) for line in lines), file=file,
          flush=True)


def cmd_status(args) -> int:
    status = load_status(args.status_file)
    try:
        running = daemon_running(status)
        (status["outdated_watchers"], status["only_own_watchers"],
         own_outdated) = load_watchers(args.status_file)
        if status["only_own_watchers"]:
            status["own_outdated"] = own_outdated
        # JSON escapes every control character itself.
        lines = [json.dumps(status, indent=2, sort_keys=True)] if args.json \
            else format_status(status)
    except (KeyError, TypeError) as e:
        raise Failure(f"status file {args.status_file}: bad or missing "
                      f"field {e}") from None
    if args.json:
        print(lines[0])
    else:
        show(lines)
    if not running:
        show([f"vmgenid: stale status file {args.status_file}: daemon pid "
              f"{status['daemon_pid']} is not running"], file=sys.stderr)
        return EXIT_NOT_RUNNING
    return EXIT_UNSEEN if status["source"].get("unseen") else EXIT_OK


# -- the device -----------------------------------------------------------

def open_watcher(args, wait_for_node: bool,
                 timeout: Optional[float] = None) -> client.Watcher:
    """The device (or --fd), waiting for the node if wait_for_node, at
    most timeout seconds (then exit 3); without waiting, no node is exit
    1."""
    if getattr(args, "fd", None) is not None:
        return inherited_watcher(args)
    try:
        return client.Watcher(args.device, args.page,
                              wait_for_node=wait_for_node, timeout=timeout)
    except client.NoDevice as e:
        raise NoDeviceFailure(e.strerror, EXIT_ERROR if timeout is None
                              else EXIT_TIMEOUT) from None
    except OSError as e:
        raise Failure(f"cannot open {args.device}: {e.strerror}"
                      + (" (is cuse-vmgenid running?)"
                         if e.errno in client.NODE_AWAY else "")) from None


def inherited_watcher(args) -> client.Watcher:
    """Descriptor args.fd, checked to be the device, open read-write (a
    read-only one fails every ack, a write-only one every read: never a
    reason to reopen)."""
    try:
        fd_stat = os.fstat(args.fd)
        mode = fcntl.fcntl(args.fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        raise Failure(f"descriptor {args.fd} is not open", EXIT_USAGE) \
            from None
    if mode != os.O_RDWR:
        only = "read-only" if mode == os.O_RDONLY else "write-only"
        raise Failure(f"descriptor {args.fd} is {only}, not read-write: "
                      f"reopen it with exec {args.fd}<>/proc/self/fd/{args.fd}")
    try:
        node = os.stat(args.device)
    except OSError:
        node = None
    if node is not None and fd_stat.st_rdev != node.st_rdev:
        raise Failure(f"descriptor {args.fd} is not {args.device}",
                      EXIT_USAGE)
    return client.Watcher(args.device, args.page, fd=args.fd)


def print_generation(generation: Optional[int]) -> None:
    # None: the daemon restarted and there is no page to say the counter.
    print("unknown" if generation is None else generation, flush=True)


def cmd_wait(args) -> int:
    deadline = None if args.timeout is None \
        else time.monotonic() + args.timeout
    # Without a timeout a missing node is an error at once: waiting for a
    # daemon that may never come is what --timeout is for.
    with open_watcher(args, wait_for_node=args.timeout is not None,
                      timeout=args.timeout) as watcher:
        try:
            generation = watcher.wait(
                None if deadline is None
                else max(0.0, deadline - time.monotonic()))
        except client.NoDevice as e:
            # The daemon went away under the watcher and is not back.
            raise Failure(f"{e.strerror}: it went away while waiting, a "
                          "change may have happened") from None
        if generation is None and not watcher.reopened:
            print(f"vmgenid: no change within {args.timeout:g}s",
                  file=sys.stderr)
            return EXIT_TIMEOUT
        print_generation(generation)
        # A descriptor of our own is acked here; an inherited one is acked
        # by its owner (`vmgenid ack --fd N`) once it has reacted.
        if not watcher.inherited or args.ack:
            watcher.ack()
    return EXIT_OK


def cmd_ack(args) -> int:
    watcher = inherited_watcher(args)
    generation = args.generation
    if generation is None:
        generation = watcher.wait(0)
        if generation is None:
            return EXIT_OK      # up to date: nothing to acknowledge
    if not watcher.ack(generation):
        print(f"vmgenid: generation {generation} is no longer current: "
              "wait again", file=sys.stderr)
        return EXIT_CHANGED_AGAIN
    print(generation)
    return EXIT_OK


def cmd_watch(args) -> int:
    try:
        watcher = open_watcher(args, wait_for_node=False)
    except NoDeviceFailure:
        # Said once; the watcher then retries until the daemon serves.
        show([f"vmgenid: waiting for {args.device}"], file=sys.stderr)
        watcher = open_watcher(args, wait_for_node=True)
    with watcher:
        for generation in watcher.changes():   # acks after the command
            env = dict(os.environ,
                       VMGENID_GENERATION="" if generation is None
                       else str(generation),
                       VMGENID_REASON="restart" if watcher.reopened
                       else "change")
            code = subprocess.call(["/bin/sh", "-c", args.exec], env=env)
            if code != 0:
                show([f"vmgenid: '{args.exec}' exited {code} for "
                      f"generation {generation}"], file=sys.stderr)
    return EXIT_OK


def cmd_bump(args) -> int:
    with open_watcher(args, wait_for_node=False) as watcher:
        try:
            generation = watcher.force(args.min)
        except OSError as e:
            if e.errno == errno.EACCES:
                raise Failure("permission denied: changing the generation "
                              "needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN "
                              "in the daemon's user namespace",
                              EXIT_DENIED) from None
            if e.errno == errno.EOVERFLOW:
                raise Failure(f"--min {args.min}: the counter would pass "
                              "0x7fffffff") from None
            raise Failure(f"bump failed: {e.strerror}") from None
    print(generation)
    return EXIT_OK


# -- command line ---------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    # Every value is checked here, before the device is opened (options.py).
    common = OneLineParser(add_help=False)
    common.add_argument("--device", type=path, default=client.DEVICE,
                        help="the device (default: %(default)s)")
    common.add_argument("--page", default=client.PAGE,
                        help="the counter page (default: %(default)s)")

    p = OneLineParser(
        prog="vmgenid", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Look at and use /dev/vmgenid (VM Generation ID).")
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_text, parents=(common,)):
        cp = sub.add_parser(name, parents=list(parents), help=help_text,
                            description=help_text, epilog=EPILOG,
                            formatter_class=argparse
                            .RawDescriptionHelpFormatter)
        cp.set_defaults(func=func)
        return cp

    status = command("status", cmd_status, "the daemon's status: counter, "
                     "outdated watchers, source, last change",
                     parents=())
    status.add_argument("--status-file", type=path, default=STATUS,
                        help="the daemon's status file (default: "
                             "%(default)s)")
    status.add_argument("--json", action="store_true",
                        help="the status as JSON")

    wait = command("wait", cmd_wait, "block until the generation changes, "
                   "print the new counter and acknowledge it")
    wait.add_argument("--timeout", type=WAIT_TIMEOUT, metavar="SECONDS",
                      help=with_span(f"give up after SECONDS (exit "
                                     f"{EXIT_TIMEOUT})", WAIT_TIMEOUT))
    wait.add_argument("--fd", type=DESCRIPTOR, metavar="N",
                      help="wait on inherited descriptor N (a watcher the "
                           "caller keeps open), returning at once if it is "
                           "outdated; it is not acknowledged (see ack)")
    wait.add_argument("--ack", action="store_true",
                      help="with --fd: acknowledge at once")

    ack = command("ack", cmd_ack, "acknowledge the generation on inherited "
                  "descriptor N (a fresh open is always up to date, so "
                  "there is nothing to acknowledge without --fd)")
    ack.add_argument("--fd", type=DESCRIPTOR, metavar="N", required=True,
                     help="the descriptor, opened read-write "
                          "(exec N</dev/vmgenid, then "
                          "exec N<>/proc/self/fd/N)")
    ack.add_argument("generation", type=GENERATION, nargs="?",
                     help="the generation the caller reacted to (default: "
                          f"the current one); if it changed again, exit "
                          f"{EXIT_CHANGED_AGAIN}")

    watch = command("watch", cmd_watch, "run a command on every change, "
                    "then acknowledge; a daemon restart counts as a change")
    watch.add_argument("--exec", required=True, metavar="CMD",
                       help="run with /bin/sh -c; VMGENID_GENERATION holds "
                            "the counter, VMGENID_REASON change or restart")

    bump = command("bump", cmd_bump, "change the generation "
                   "(VMGENID_FORCE_GEN_UPDATE) and print the new counter")
    bump.add_argument("--min", type=GENERATION, metavar="N",
                      help=with_span("at least N (VMGENID_FORCE_GEN_UPDATE_"
                                     "MIN: max(N, counter + 1))", GENERATION))
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Failure as e:
        show([f"vmgenid: {e}"], file=sys.stderr)
        return e.code
    except client.DeviceGone as e:
        show([f"vmgenid: {e.strerror}"], file=sys.stderr)
        return EXIT_REOPEN
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
