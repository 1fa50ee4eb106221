# SPDX-License-Identifier: MIT
"""Where the harness keeps downloads and built guest images."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "guest"


class HarnessError(Exception):
    """The harness itself failed (not the command in the guest)."""


def write_atomically(dest: Path, data: bytes, mode: int = 0o644) -> None:
    """Readers, and concurrent builders, see the whole file or none."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, dest)
