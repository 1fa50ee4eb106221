# SPDX-License-Identifier: MIT
"""Debian suites other than the machine's own, through a private apt
configuration in the cache: its own sources list, package lists and
cache per suite, so the machine's apt sources and state stay untouched.
"""

import contextlib
import fcntl
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cache import CACHE_DIR, HarnessError

APT_DIR = CACHE_DIR / "apt"
DEB_DIR = CACHE_DIR / "debs"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SOURCES = [Path("/etc/apt/sources.list"),
           *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
           *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
FALLBACK_MIRROR = "http://deb.debian.org/debian"
UPDATE_EVERY = 24 * 3600    # seconds: sid moves daily
# apt drops to the _apt user, which cannot write into root's cache.
AS_ROOT = ["-o", "APT::Sandbox::User=root"]


def mirror_uri(sources: list[Path] = SOURCES) -> str:
    """The Debian mirror the machine's own @sources use (a .sources
    "URIs:" or a one-line "deb" entry whose path ends in /debian)."""
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s*)?)"
                              r"(\S+/debian)/?\s", text, re.MULTILINE):
            return uri
    return FALLBACK_MIRROR


class Suite:
    """One Debian suite ("bullseye", "sid"), main, for this machine's
    architecture; None: the machine's own apt configuration, as it is."""

    def __init__(self, name: str | None):
        self.name = name
        self.label = name or "the machine's apt sources"
        self.dir = APT_DIR / (name or "system")

    def options(self) -> list[str]:
        if self.name is None:
            return AS_ROOT
        return ["-o", f"Dir::Etc::sourcelist={self.dir / 'sources.list'}",
                "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::lists={self.dir / 'lists'}/",
                "-o", f"Dir::Cache={self.dir / 'cache'}/", *AS_ROOT]

    def update(self, max_age: float = UPDATE_EVERY) -> None:
        """apt-get update for this suite unless done in the last
        @max_age seconds (the machine's own: never, tools/bootstrap did)."""
        if self.name is None:
            return
        with locked(self.dir):
            stamp = self.dir / "updated"
            if stamp.is_file() and time.time() - stamp.stat().st_mtime \
                    < max_age:
                return
            for sub in ["lists/partial", "cache/archives/partial"]:
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            (self.dir / "sources.list").write_text(
                f"deb [signed-by={KEYRING}] {mirror_uri()} {self.name} "
                "main\n")
            run_apt(["apt-get", "update", *self.options()],
                    f"updating the package lists of {self.name}")
            stamp.touch()

    def apt_cache(self, *args: str) -> str:
        self.update()
        return subprocess.run(["apt-cache", *self.options(), *args],
                              check=True, capture_output=True,
                              text=True).stdout

    def package_names(self, pattern: str) -> list[str]:
        """The package names matching the regex @pattern (whole name)."""
        out = self.apt_cache("search", "--names-only", f"^{pattern}$")
        return [line.split()[0] for line in out.splitlines()]

    def download(self, package: str) -> Path:
        """The .deb of the candidate version of @package, downloaded into
        the cache once."""
        return self.download_all([package])[0]

    def download_all(self, packages: list[str]) -> list[Path]:
        """The .debs of the candidate versions of @packages, in order,
        those not in the cache yet downloaded by one apt-get."""
        self.update()
        try:
            return self.fetch(packages)
        except (HarnessError, subprocess.CalledProcessError):
            # Lists up to a day old: the mirror may have dropped that
            # version since.
            self.update(max_age=0)
            return self.fetch(packages)

    def fetch(self, packages: list[str]) -> list[Path]:
        found = subprocess.run(
            ["apt-get", "download", "--print-uris", *self.options(),
             *packages], capture_output=True, text=True)
        # One line per package: 'URI' file size hash.
        files = [line.split()[1] for line in found.stdout.splitlines()]
        if found.returncode or len(files) != len(packages):
            raise HarnessError(f"{self.label} lacks some of "
                               f"{' '.join(packages)}: "
                               f"{found.stderr.strip()}")
        # apt prints them in its own order: match each file to its package.
        by_name = {name.split("_")[0]: DEB_DIR / name for name in files}
        cached = [by_name[package] for package in packages]
        if all(deb.is_file() for deb in cached):
            return cached
        DEB_DIR.mkdir(parents=True, exist_ok=True)
        with locked(self.dir), tempfile.TemporaryDirectory(dir=DEB_DIR) as tmp:
            missing = [package for package, deb in zip(packages, cached, strict=True)
                       if not deb.is_file()]
            if missing:
                run_apt(["apt-get", "download", *self.options(), *missing],
                        f"downloading {' '.join(missing)} ({self.label})",
                        cwd=tmp)
            for deb in Path(tmp).glob("*.deb"):
                shutil.move(deb, DEB_DIR / deb.name)
        return cached


@contextlib.contextmanager
def locked(directory: Path):
    """An exclusive lock on @directory: harness runs in parallel (guests,
    worktrees) share the cache."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_apt(command: list[str], what: str, cwd=None) -> None:
    """apt's own progress on a terminal, one line otherwise; on stderr,
    so that stdout carries only results (python -m tests.harness header)."""
    if sys.stderr.isatty():
        subprocess.run(command, cwd=cwd, check=True, stdout=sys.stderr)
        return
    print(f"harness: {what}", file=sys.stderr, flush=True)
    proc = subprocess.run([*command[:1], "-q", *command[1:]], cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout)
        raise subprocess.CalledProcessError(proc.returncode, command)
