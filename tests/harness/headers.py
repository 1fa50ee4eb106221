# SPDX-License-Identifier: MIT
"""Kernel UAPI headers newer than this machine's, from sid's
linux-libc-dev, unpacked into the cache (the host's own headers stay)."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from .aptsuite import Suite
from .cache import CACHE_DIR, HarnessError

HEADER_DIR = CACHE_DIR / "headers"


def sid_header(name: str) -> Path:
    """The path of sid's <@name> (relative to /usr/include, e.g.
    "linux/vmclock-abi.h"; a bare file name means "linux/<name>").
    Its include directory, for -I, is the path minus @name."""
    if "/" not in name:
        name = f"linux/{name}"
    deb = Suite("sid").download("linux-libc-dev")
    include = HEADER_DIR / deb.stem / "include"
    if not include.is_dir():
        HEADER_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=HEADER_DIR,
                                         prefix=".unpack-") as tmp:
            subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
            unpacked = Path(tmp) / "usr" / "include"
            include.parent.mkdir(exist_ok=True)
            try:
                unpacked.rename(include)
            except OSError:
                if not include.is_dir():    # not a concurrent unpack
                    raise
        for stale in HEADER_DIR.iterdir():
            if stale != include.parent and not stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True)
    header = include / name
    if not header.is_file():
        raise HarnessError(f"{deb.name} has no usr/include/{name}")
    return header
