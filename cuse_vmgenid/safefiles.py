# SPDX-License-Identifier: MIT
"""Where the daemon's own files live, and how they are created.

As root, in a folder others can write to, a file name can be a planted
symlink that makes the daemon overwrite another file.  So the daemon's
folders must be owned by it (root) and not group- or world-writable, and
its files are created with O_EXCL and O_NOFOLLOW under unique temporary
names, then renamed into place: a rename replaces a planted name itself,
never what it points to.
"""

import os
import stat
import tempfile
from typing import Optional


class UnsafeFolder(ValueError):
    """A folder the daemon will not keep its files in."""


def others_can_write(st: os.stat_result) -> Optional[str]:
    """Why someone but the daemon could write the file or folder of @st
    (its owner, or a mode writable by group or others), or None."""
    if st.st_uid != os.geteuid():
        return (f"owned by uid {st.st_uid}, not by the daemon "
                f"(uid {os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_folder(folder: str) -> None:
    """Make folder (0755) if missing; raise UnsafeFolder unless it is the
    daemon's own and only it can write there."""
    os.makedirs(folder, mode=0o755, exist_ok=True)
    why = others_can_write(os.stat(folder))
    if why:
        raise UnsafeFolder(f"{folder} is {why}: give it to root and chmod "
                           "go-w it, or choose another folder")


def create_exclusive(path: str, mode: int) -> tuple[int, str]:
    """A new file beside path under a unique name (O_EXCL, O_NOFOLLOW):
    its read-write descriptor and its name, for the caller to fill and
    rename over path."""
    folder, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".new",
                               dir=folder or ".")
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


# The random part of unique_name(): 12 lowercase hex digits.
UNIQUE_BYTES = 6
HEX_DIGITS = frozenset("0123456789abcdef")


def unique_name(path: str) -> str:
    """A name beside path that nothing has (for a symlink: symlink(2)
    never follows or replaces what is there)."""
    folder, name = os.path.split(path)
    return os.path.join(folder,
                        f".{name}.{os.urandom(UNIQUE_BYTES).hex()}.new")


def is_unique_name(path: str, entry: str) -> bool:
    """Whether @entry, a name in path's folder, is one unique_name(path)
    makes (never one of another file's, whatever the two names)."""
    prefix, suffix = f".{os.path.basename(path)}.", ".new"
    random = entry[len(prefix):len(entry) - len(suffix)]
    return (entry.startswith(prefix) and entry.endswith(suffix)
            and len(random) == 2 * UNIQUE_BYTES
            and HEX_DIGITS.issuperset(random))


def is_some_unique_name(name: str) -> bool:
    """Whether @name is one unique_name() makes for some path: a start
    takes such a file, unlocked, for a dead daemon's (statefile.py)."""
    tail = len(".") + 2 * UNIQUE_BYTES + len(".new")
    stem = name[1:len(name) - tail]
    return bool(stem) and name.startswith(".") and is_unique_name(stem, name)
