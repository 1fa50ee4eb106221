# SPDX-License-Identifier: MIT
"""run_in_guest(): one command in a fresh guest, its exit code back."""

import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import dataclass

from .cache import CACHE_DIR, REPO_ROOT, write_atomically
from .console import BOOT_ATTEMPTS, Console
from .images import prepare
from .qemu import qemu_command, run_qemu

TIMED_OUT = 124
GUEST_FAILED = 125      # panic, QEMU died, or no exit code from the guest


@dataclass
class GuestResult:
    returncode: int
    output: str                     # the console, as streamed
    boot_seconds: float | None      # QEMU start to command start
    failure: str | None             # why the harness chose returncode


def guest_script(command: str, env: dict[str, str]) -> str:
    """Shell code the guest runs: the environment, then @command."""
    exports = {"HOME": "/root", "LANG": "C.UTF-8",
               "PATH": os.environ["PATH"], **env}
    lines = ["#!/bin/sh"]
    for name, value in exports.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"bad environment variable name {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines += [f"cd {shlex.quote(str(REPO_ROOT))} || exit 125", command, ""]
    return "\n".join(lines)


def fail_loudly(message: str) -> None:
    print(f"\nharness: FAILED: {message}", file=sys.stderr, flush=True)


def run_in_guest(kernel: str, command: str, *, timeout: float = 1800,
                 env: dict[str, str] | None = None, mem_mb: int = 3072,
                 guid: str | None = None) -> GuestResult:
    """Boot a @kernel (kernels.FLAVOURS) guest, run the shell @command there
    as root in the repo, stream the console to stdout."""
    image = prepare(kernel)
    # The host root is the guest's root: the guest reads this very file.
    script = CACHE_DIR / "run" / f"{uuid.uuid4()}.sh"
    if re.search(r"\s", str(script)):
        raise ValueError(f"{script}: the kernel command line needs no spaces")
    write_atomically(script, guest_script(command, env or {}).encode())
    qemu = qemu_command(image, f"vmgenid.script={script}", mem_mb=mem_mb,
                        guid=guid or str(uuid.uuid4()))
    earlier = []        # the consoles of boots that panicked
    try:
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            console = Console()
            started = time.monotonic()
            status = run_qemu(qemu, console, timeout)
            if not (console.panicked_while_booting
                    and attempt < BOOT_ATTEMPTS):
                break
            print(f"\nharness: WARNING: the guest kernel panicked while "
                  f"booting, before the command started (kernel "
                  f"{image.release}): booting again (attempt {attempt + 1} "
                  f"of {BOOT_ATTEMPTS})", file=sys.stderr, flush=True)
            earlier.append("".join(console.output))
    finally:
        script.unlink()

    boot = None if console.started_at is None else console.started_at - started
    failure = None
    if console.exit_code is not None:
        returncode = console.exit_code
    elif console.panicked:
        returncode, failure = GUEST_FAILED, "the guest kernel panicked"
    elif status is None:
        returncode, failure = TIMED_OUT, f"timed out after {timeout:g} s"
    else:
        returncode, failure = GUEST_FAILED, (
            f"QEMU exited (status {status}) before the guest command did")
    if failure:
        fail_loudly(f"{failure} (kernel {image.release})")
    elif boot is not None:
        print(f"harness: {image.release}: command started {boot:.1f} s "
              f"after QEMU, exited {returncode} after "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return GuestResult(returncode, "".join(earlier + console.output), boot,
                       failure)
