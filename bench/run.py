#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The benchmark suite of issue #6, one command (also `make bench`):

    .venv/bin/python bench/run.py [--quick] [--only ITEM ...]
        [--kernel 6.12] [--restores 20] [--docs | --no-docs]

Boots one guest for the in-guest items (bench/guest_suite.py: fan-out,
round trip, orchestration, mmap probe, memory, idle CPU), then runs the
real save/restore item (bench/restore_latency.py) in guests of its own,
prints one table and, for a full run, writes it with the command and the
guest kernel into docs/benchmarks.rst (between the GENERATED markers; the
analysis around them is kept) with the fan-out plot docs/benchmarks.png.

The run takes /tmp/vmgenid-qemu.lock (flock) itself, from the first
guest to the last (one guest at a time on this machine; the figures of
one run come from uninterrupted guests): do not wrap this command in flock
yourself, it would wait for itself.
"""

import compileall
import fcntl
import json
import os
import shlex
import sys
import time
from contextlib import contextmanager

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import guest_suite, report, restore_latency  # noqa: E402
from tests.harness.guest import run_in_guest  # noqa: E402
from tests.harness.vm import GuestError  # noqa: E402

QEMU_LOCK = "/tmp/vmgenid-qemu.lock"
ITEMS = (*guest_suite.ITEMS, "restore")
DOC = os.path.join(REPO, "docs", "benchmarks.rst")
PLOT = os.path.join(REPO, "docs", "benchmarks.png")
GUEST_TIMEOUT = 3 * 3600


@contextmanager
def qemu_lock():
    """One guest at a time on this machine."""
    with open(QEMU_LOCK, "a") as lock:
        t0 = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = time.monotonic() - t0
        if waited > 1:
            print(f"bench: waited {waited:.0f} s for {QEMU_LOCK}",
                  flush=True)
        yield


def compile_bytecode(root: str = REPO) -> None:
    """Byte-compile the daemon's and the client's packages, as py3compile
    does when the Debian package is installed.  A module edited since its
    last import would otherwise be compiled by the daemon in the guest,
    whose heap keeps the compiler's garbage: +445 KiB of RSS at rest, more
    than the figure's noise (docs/benchmarks.rst, issue 22)."""
    for package in ("cuse_vmgenid", os.path.join("client", "vmgenid")):
        if not compileall.compile_dir(os.path.join(root, package), quiet=1):
            raise RuntimeError(f"bench: {package} does not compile")


def run_guest_items(args, items: list[str]) -> dict:
    command = [".venv/bin/python", "bench/guest_suite.py"]
    command += ["--quick"] if args.quick else []
    for item in items:
        command += ["--only", item]
    result = run_in_guest(args.kernel, shlex.join(command),
                          timeout=GUEST_TIMEOUT, mem_mb=args.mem_mb)
    begin = result.output.rfind(guest_suite.BEGIN)
    end = result.output.find(guest_suite.END, begin)
    if result.returncode or begin < 0 or end < 0:
        raise RuntimeError(f"the guest suite failed (exit "
                           f"{result.returncode}): no results")
    return json.loads(result.output[begin + len(guest_suite.BEGIN):end])


def main() -> int:
    p = guest_suite.suite_parser(__doc__, ITEMS,
                                 "small N, 3 restores (development)")
    p.add_argument("--kernel", default="6.12", choices=("6.12", "6.1"))
    p.add_argument("--restores", type=int, help="restores for item 4 "
                   "(default 20, --quick 3)")
    p.add_argument("--mem-mb", type=int, default=3072,
                   help="in-suite guest memory (%(default)s)")
    docs = p.add_mutually_exclusive_group()
    docs.add_argument("--docs", action="store_true", default=None,
                      help="write docs/ even for a partial or quick run")
    docs.add_argument("--no-docs", dest="docs", action="store_false")
    p.add_argument("--save-json", metavar="FILE",
                   help="also write the raw results here")
    p.add_argument("--from-json", metavar="FILE",
                   help="run nothing: render the results --save-json "
                   "wrote (with the command that made them)")
    args = p.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        return render(saved["command"], saved["guest"], saved["restore"],
                      args.docs is not False)
    items = args.only or list(ITEMS)
    restores = args.restores or (3 if args.quick else 20)
    write_docs = (args.docs if args.docs is not None
                  else not args.quick and not args.only)
    command = shlex.join([".venv/bin/python", "bench/run.py",
                          *sys.argv[1:]])
    started = time.monotonic()
    compile_bytecode()

    guest = restore = None
    guest_items = [i for i in items if i != "restore"]
    with qemu_lock():
        if guest_items:
            guest = run_guest_items(args, guest_items)
        if "restore" in items:
            try:
                restore = restore_latency.measure(restores, args.kernel)
            except GuestError as e:
                notes = "".join(f"; {n}" for n in getattr(e, "__notes__",
                                                          []))
                print(f"bench: restore item FAILED: {e}{notes}",
                      file=sys.stderr)
                return 1
    if restore:
        restore_latency.report(restore)
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump({"command": command, "guest": guest,
                       "restore": restore}, f, indent=1)
    print(f"bench: total {time.monotonic() - started:.0f} s")
    return render(command, guest, restore, write_docs)


def render(command: str, guest, restore, write_docs: bool) -> int:
    table = report.grid(report.rows(guest, restore))
    kernel = guest["kernel"] if guest else restore["kernel"]
    print(f"\n{command}\nguest kernel {kernel}\n{table}")
    if write_docs:
        plot = None
        if guest and "fanout" in guest["items"]:
            report.plot(guest, PLOT)
            plot = os.path.basename(PLOT)
        report.update_doc(DOC, report.generated_rst(
            guest, restore, command, table, plot))
        print(f"bench: wrote {os.path.relpath(DOC, REPO)}"
              + (f" and {os.path.relpath(PLOT, REPO)}" if plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
