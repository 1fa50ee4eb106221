# SPDX-License-Identifier: MIT
"""Read-only block roots for guests that are saved and restored.

9p blocks migration, so a guest that will be saved boots from two lz4
squashfs images instead of the host root, both at the host's own paths:

- system: what the guest runs (the C library and the other system
  libraries, /usr/bin and /usr/sbin, /etc, the Python the venv uses, its
  pruned standard library), not the whole host root;
- repo: the checkout (with .venv, the built cffi module, native/build),
  without .cache/ and .git/.

init.sh stacks them (repo over system) under a tmpfs upper, as it does
with 9p.  Each image is cached under .cache/guest/root/, named by a hash
of its inputs' paths, modes, sizes and mtimes: editing the repo rebuilds
only the small repo image.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import CACHE_DIR, REPO_ROOT, HarnessError

IMAGE_DIR = CACHE_DIR / "root"
# Mount points and scratch dirs: empty in the image, as on a real root.
EMPTY_DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777,
              "run": 0o755, "mnt": 0o755, "var": 0o755, "var/tmp": 0o1777,
              "var/log": 0o755, "var/cache": 0o755,
              # apt install of a local package (tests/system): its
              # folders, no package lists (a guest has no network).
              "var/lib/apt": 0o755, "var/lib/apt/lists": 0o755,
              "var/lib/apt/lists/partial": 0o700,
              "var/cache/apt": 0o755, "var/cache/apt/archives": 0o755,
              "var/cache/apt/archives/partial": 0o700, "var/log/apt": 0o755,
              "home": 0o755}
# Trees, from the host root, that the guest runs (missing ones skipped).
SYSTEM_TREES = ["/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin",
                "/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/locale",
                "/usr/lib/os-release", "/usr/lib/ssl", "/usr/share/zoneinfo",
                "/etc",
                # systemd as init and dpkg -i of the package (tests/system):
                # units and helpers, D-Bus, dpkg's database, Debian's Python
                # packages (python3-cffi-backend) and py3compile.
                "/usr/lib/systemd", "/usr/lib/tmpfiles.d", "/usr/lib/sysusers.d",
                "/usr/lib/modules-load.d", "/usr/lib/udev", "/usr/lib/init",
                "/usr/lib/dpkg", "/usr/share/dpkg", "/var/lib/dpkg",
                "/usr/lib/apt",
                # README's venv (tests/system): python3 -m venv's pip.
                "/usr/share/python-wheels",
                "/usr/lib/python3/dist-packages", "/usr/share/python3",
                "/usr/share/perl5", "/usr/share/dbus-1",
                # The C compiler and headers: tests/system builds an example
                # against the installed cuse-vmgenid-dev.
                "/usr/lib/gcc", "/usr/include"]
# Names never needed in the guest, wherever they are in those trees.
SKIP_NAMES = {"test", "tests", "idlelib", "tkinter",
              "turtledemo", "lib2to3", "dri", "valgrind"}
SKIP_PREFIXES = ("libLLVM", "config-3.",       # LLVM; Python's static lib
                 "cc1plus", "lto1")             # C++, LTO: only C is built
SKIP_SUFFIXES = (".a",)                          # static libraries, but
KEEP_STATIC = {"libc_nonshared.a", "libgcc.a",  # those every C link needs
               "libpthread.a"}                  # (-pthread: a stub)
REPO_SKIP = {".cache", ".git", ".pytest_cache"}
# Unused images are deleted this long after their last use (a restore
# needs the image its snapshot was saved with).
KEEP_UNUSED_SECONDS = 3600


@dataclass(frozen=True)
class RootImages:
    system: Path
    repo: Path


def python_trees() -> list[str]:
    """The standard library and binaries of the venv's Python (pyenv's,
    or Debian's) and of Debian's /usr/bin/python3 (for the tests' other
    users), without site-packages: the venv has its own."""
    trees = []
    for python in [REPO_ROOT / ".venv" / "bin" / "python",
                   Path("/usr/bin/python3")]:
        if not python.exists():
            continue
        out = subprocess.run(
            [python, "-c", "import sys, sysconfig; print(sys.base_prefix); "
             "print(sysconfig.get_paths()['stdlib'])"],
            check=True, capture_output=True, text=True).stdout.split("\n")
        prefix, stdlib = out[0], out[1]
        if prefix == "/usr":
            trees.append(stdlib)       # its binary and libraries are in /usr
        else:
            trees.append(prefix)
    return trees


def skipped(relpath: str, name: str, is_dir: bool) -> bool:
    if is_dir and name in SKIP_NAMES:
        return True
    if is_dir and name == "site-packages" and "/.venv/" not in relpath:
        return True
    if name.startswith(SKIP_PREFIXES):
        return True
    return (not is_dir and name.endswith(SKIP_SUFFIXES)
            and name not in KEEP_STATIC)


def select(trees: list[str], skip) -> tuple[str, list[str]]:
    """Walk @trees (absolute paths under /); returns (key, excludes): a
    hash of every kept entry's path, mode, size and mtime, and the
    absolute paths mksquashfs must leave out of a "/" source so that only
    @trees (minus what @skip(relpath, name, is_dir) rejects) and their
    ancestor directories remain."""
    digest = hashlib.sha256()
    excludes: list[str] = []
    trees = sorted({os.path.normpath(t) for t in trees if os.path.lexists(t)})
    wanted = set(trees)
    ancestors = {str(p) for t in trees for p in Path(t).parents}

    def note(path, st):
        digest.update(f"{path}\0{st.st_mode:o}\0{st.st_size}\0"
                      f"{st.st_mtime_ns}\n".encode())

    def walk(path):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as err:
            raise HarnessError(f"cannot list {path}: {err}") from None
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            if skip(entry.path, entry.name, is_dir):
                excludes.append(entry.path)
                continue
            note(entry.path, entry.stat(follow_symlinks=False))
            if is_dir:
                walk(entry.path)

    for ancestor in sorted(ancestors):
        for entry in os.scandir(ancestor):
            if entry.path not in wanted and entry.path not in ancestors:
                excludes.append(entry.path)
    for tree in trees:
        note(tree, os.lstat(tree))
        if os.path.isdir(tree) and not os.path.islink(tree):
            walk(tree)
    for excluded in excludes:
        if "\n" in excluded:
            raise HarnessError(f"{excluded!r}: a newline in a file name")
    return digest.hexdigest()[:16], excludes


def mksquashfs(dest: Path, excludes: list[str], empty_dirs: dict) -> None:
    """Pack "/" minus @excludes into @dest (atomically), plus @empty_dirs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp:
        exclude_file = Path(tmp) / "exclude"
        exclude_file.write_text("".join(f"{p}\n" for p in excludes))
        image = Path(tmp) / dest.name
        pseudo = []
        for name, mode in sorted(empty_dirs.items()):
            pseudo += ["-p", f"{name} d {mode:o} 0 0"]
        done = subprocess.run(
            ["mksquashfs", "/", image, "-noappend", "-comp", "lz4",
             "-no-xattrs", "-quiet", "-no-progress", "-ef", exclude_file,
             *pseudo], capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(f"mksquashfs {dest.name} failed: "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        os.replace(image, dest)


def ensure(kind: str, trees: list[str], skip, empty_dirs: dict) -> Path:
    key, excludes = select(trees, skip)
    dest = IMAGE_DIR / f"{kind}-{key}.squashfs"
    if not dest.is_file():
        print(f"harness: building the {kind} root image", file=sys.stderr,
              flush=True)
        started = time.monotonic()
        mksquashfs(dest, excludes, {
            name: mode for name, mode in empty_dirs.items()
            if not any(f"{t}/".startswith(f"/{name}/") for t in trees)})
        print(f"harness: {dest.name}: {dest.stat().st_size >> 20} MiB in "
              f"{time.monotonic() - started:.1f} s", file=sys.stderr,
              flush=True)
    os.utime(dest)              # in use: see KEEP_UNUSED_SECONDS
    for stale in IMAGE_DIR.glob(f"{kind}-*.squashfs"):
        try:
            if (stale != dest and time.time() - stale.stat().st_mtime
                    > KEEP_UNUSED_SECONDS):
                stale.unlink()
        except FileNotFoundError:
            pass
    return dest


def repo_skip(path: str, name: str, is_dir: bool) -> bool:
    return os.path.dirname(path) == str(REPO_ROOT) and name in REPO_SKIP


def prepare_root() -> RootImages:
    """The system and repo images, built if missing or stale."""
    if any(c.isspace() or c == "," for c in str(IMAGE_DIR)):
        raise HarnessError(f"{IMAGE_DIR}: QEMU's -drive needs a path "
                           "without commas or spaces")
    system = ensure("system", SYSTEM_TREES + python_trees(), skipped,
                    EMPTY_DIRS)
    repo_trees = [str(REPO_ROOT)]
    venv = REPO_ROOT / ".venv"
    if venv.is_symlink():
        # A git worktree sharing another checkout's venv: bring it along.
        repo_trees.append(os.path.realpath(venv))
    repo = ensure("repo", repo_trees, repo_skip, {})
    return RootImages(system, repo)
