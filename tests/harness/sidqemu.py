# SPDX-License-Identifier: MIT
"""Debian sid's QEMU, run on this machine without installing it: for
devices the machine's own QEMU (bookworm's 7.2) does not have, such as
`-device vmclock`.

Its packages (the Depends closure of qemu-system-x86 in sid, first
alternatives, without systemd: libibverbs1's, for a udev rule) come
through the private apt configuration of aptsuite.py and are unpacked
with dpkg-deb into the cache, one tree per set of package versions.
QEMU then runs through sid's own dynamic loader and libraries, with
`-L` at sid's firmware, inside a private mount namespace whose
/usr/lib/x86_64-linux-gnu/qemu is sid's module folder: QEMU looks for
its modules (TCG is one) at that compiled-in path, and the machine's
own are 7.2's (it aborts on them).  The namespace needs root, as the
harness's guests do.
"""

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .aptsuite import Suite
from .cache import CACHE_DIR, HarnessError

TREE_DIR = CACHE_DIR / "sid-qemu"
TOP = "qemu-system-x86"
# Never needed to run QEMU, and would pull in half a system.
SKIP = {"systemd"}
MULTIARCH = "usr/lib/x86_64-linux-gnu"
MODULE_DIR = Path("/") / MULTIARCH / "qemu"
DEPENDS = re.compile(r"^\s+(\|?)(?:Pre)?Depends: (\S+)$")


def closure(suite: Suite, top: str = TOP) -> list[str]:
    """@top and what it depends on in @suite, recursively: the first of
    each group of alternatives, no virtual packages, nothing in SKIP."""
    found = {top}
    todo = [top]
    while todo:
        out = suite.apt_cache("depends", "--no-recommends", "--no-suggests",
                              "--no-conflicts", "--no-breaks",
                              "--no-replaces", "--no-enhances", *todo)
        todo = []
        alternative = False     # the line before began a group ("|")
        for line in out.splitlines():
            match = DEPENDS.match(line)
            if not match:
                alternative = False
                continue
            first = not alternative
            alternative = bool(match.group(1))
            name = match.group(2)
            if not first or name.startswith("<") or name in SKIP \
                    or name in found:
                continue
            found.add(name)
            todo.append(name)
    return sorted(found)


class SidQemu:
    """An unpacked sid QEMU: argv() is the command that runs it."""

    def __init__(self, root: Path):
        self.root = root

    def argv(self) -> list[str]:
        """qemu-system-x86_64, with its firmware: the start of a command
        line in place of the machine's own binary."""
        root = self.root
        libs = ":".join(str(root / d) for d in
                        [MULTIARCH, "lib/x86_64-linux-gnu", "usr/lib"])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" "$1" && shift && exec "$@"',
                str(root / MULTIARCH / "qemu"), str(MODULE_DIR),
                str(root / MULTIARCH / "ld-linux-x86-64.so.2"),
                "--library-path", libs,
                str(root / "usr/bin" / "qemu-system-x86_64"),
                "-L", str(root / "usr/share/seabios"),
                "-L", str(root / "usr/share/qemu")]


def prepare_sid_qemu() -> SidQemu:
    """sid's QEMU, downloaded and unpacked into the cache once per set of
    package versions; HarnessError if it cannot be."""
    if not MODULE_DIR.is_dir():
        raise HarnessError(f"{MODULE_DIR} is missing: sid's QEMU modules "
                           "are mounted over it (install qemu-system-x86)")
    suite = Suite("sid")
    debs = suite.download_all(closure(suite))
    top, = [deb for deb in debs if deb.name.startswith(TOP + "_")]
    key = hashlib.sha256(" ".join(sorted(d.name for d in debs)).encode())
    root = TREE_DIR / f"{top.stem}_{key.hexdigest()[:12]}"
    if (root / ".complete").is_file():
        return SidQemu(root)
    TREE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"harness: unpacking sid's QEMU ({len(debs)} packages)",
          flush=True)
    tmp = Path(tempfile.mkdtemp(dir=TREE_DIR, prefix=".unpack-"))
    try:
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        binary = tmp / "usr/bin/qemu-system-x86_64"
        if not binary.is_file():
            raise HarnessError(f"{top.name} has no usr/bin/"
                               "qemu-system-x86_64")
        (tmp / ".complete").touch()
        try:
            tmp.rename(root)
        except OSError:
            if not (root / ".complete").is_file():  # not a concurrent one
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in TREE_DIR.iterdir():
        if stale != root and not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    return SidQemu(root)
