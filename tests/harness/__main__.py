# SPDX-License-Identifier: MIT
"""python -m tests.harness prepare|run|header: see --help."""

import argparse
import shlex
import subprocess
import sys

from .cache import HarnessError
from .guest import GUEST_FAILED, run_in_guest
from .headers import sid_header
from .images import prepare
from .kernels import FLAVOURS


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not K=V")
    return name, value


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tests.harness")
    actions = parser.add_subparsers(dest="action", required=True)
    prep = actions.add_parser("prepare", help="download and build the "
                              "guest images only")
    prep.add_argument("--kernel", choices=[*FLAVOURS, "all"], default="all")
    run = actions.add_parser("run", help="run -- COMMAND ARGS... in a guest; "
                             "exit with its exit code (124 timeout, 125 "
                             "guest failure)")
    run.add_argument("--kernel", choices=FLAVOURS, required=True)
    run.add_argument("--timeout", type=float, default=1800)
    run.add_argument("--env", type=env_pair, action="append", default=[],
                     metavar="K=V")
    run.add_argument("--mem", type=int, default=3072, metavar="MB")
    run.add_argument("--guid", help="the VM Generation ID (default: random)")
    run.add_argument("command", nargs=argparse.REMAINDER)
    header = actions.add_parser("header", help="print the path of a header "
                                "from sid's linux-libc-dev (e.g. "
                                "vmclock-abi.h = linux/vmclock-abi.h), "
                                "fetched into the cache")
    header.add_argument("name")
    args = parser.parse_args(argv)
    if args.action == "run":
        if args.command[:1] == ["--"]:
            args.command = args.command[1:]
        if not args.command:
            parser.error("run needs -- COMMAND ARGS...")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.action == "prepare":
            for flavour in FLAVOURS if args.kernel == "all" else [args.kernel]:
                image = prepare(flavour)
                print(f"{flavour}: {image.vmlinuz} {image.initramfs}")
            return 0
        if args.action == "header":
            print(sid_header(args.name))
            return 0
        return run_in_guest(args.kernel, shlex.join(args.command),
                            timeout=args.timeout, env=dict(args.env),
                            mem_mb=args.mem, guid=args.guid).returncode
    except (HarnessError, OSError, ValueError,
            subprocess.CalledProcessError) as err:
        print(f"harness: FAILED: {err}", file=sys.stderr)
        return GUEST_FAILED


if __name__ == "__main__":
    sys.exit(main())
