# SPDX-License-Identifier: MIT
"""The project's version, in one place: both distributions, vmgenid (the
client, this package) and cuse-vmgenid (the daemon, whose setup.py reads
this file by path), have it.

RELEASE is the last release.  To make one: raise it here, add its
debian/changelog entry, commit, and tag that commit v<RELEASE> (TAG).  A
build of the tagged commit is RELEASE itself, a public version that PyPI
takes and the top debian/changelog entry names.  A build of any other
commit of a git checkout is RELEASE+git<commit time, UTC,
YYYYMMDDHHMMSS>.g<short sha>, so the build of each later commit sorts
after the one before and after the release, for pip and for dpkg alike
(the commit time, not the date alone: two commits of one day must not
sort by their hashes; the "g": an all-digit hash would lose its leading
zeros to PEP 440's normalization).  A commit tagged as another release
(v<digit>...) does not build: its tag and RELEASE disagree.

Each setup.py records the version it builds as _version.py (not in git)
in its package, the file its __version__ comes from; a tree without git
(an sdist, a source package, a git archive) builds with the _version.py
it carries, else with RELEASE.  Run as a script, it prints the version of
the tree it sits in and records it, here and in each package folder named
on its command line: tools/build-deb does that before copying the tree.
"""

import os
import subprocess
import sys
from typing import Optional

RELEASE = "0.1.0"
# The tag of a release commit.
TAG = f"v{RELEASE}"

RECORD = "_version.py"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class TagMismatch(Exception):
    """The commit is tagged as a release other than RELEASE."""


def from_git(package_dir: str) -> Optional[str]:
    """RELEASE for the commit checked out around @package_dir if it is
    tagged TAG, else RELEASE+git...; None if no git tree around it tracks
    @package_dir's files (an unpacked sdist inside someone's git
    repository: that repository says nothing about this tree).  Raises
    TagMismatch if the commit is tagged as another release."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", package_dir, *args], check=True,
            capture_output=True, text=True,
            env={**os.environ, "TZ": "UTC"}).stdout.strip()
    try:
        git("ls-files", "--error-unmatch", "--", ".")
        when, sha = git("log", "-1", "--format=%cd %h",
                        "--date=format-local:%Y%m%d%H%M%S").split()
        tags = git("tag", "--points-at", "HEAD", "--list",
                   "v[0-9]*").split()
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    if TAG in tags:
        return RELEASE
    if tags:
        raise TagMismatch(
            f"cuse-vmgenid: the commit is tagged {', '.join(tags)}, but "
            f"client/vmgenid/version.py's RELEASE is {RELEASE}: a release "
            f"commit raises RELEASE and adds its debian/changelog entry, "
            f"and is tagged v<RELEASE>")
    return git_version(when, sha)


def git_version(when: str, sha: str) -> str:
    """The version of a commit made at @when (UTC, YYYYMMDDHHMMSS) whose
    short hash is @sha."""
    return f"{RELEASE}+git{when}.g{sha}"


def recorded(package_dir: str = PACKAGE_DIR) -> Optional[str]:
    """The version the last build of this tree recorded, if any."""
    scope: dict = {}
    try:
        with open(os.path.join(package_dir, RECORD)) as f:
            exec(f.read(), scope)
    except FileNotFoundError:
        return None
    return scope.get("VERSION")


def record(version: str, package_dir: str = PACKAGE_DIR) -> None:
    path = os.path.join(package_dir, RECORD)
    text = ("# Written by vmgenid/version.py at build time; "
            "not in git.\n"
            f"VERSION = {version!r}\n")
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w") as f:
        f.write(text)


def build_version(package_dir: str = PACKAGE_DIR) -> str:
    """The version a build of the package in @package_dir gets, recorded
    there for its __version__.  Raises TagMismatch (from_git)."""
    version = from_git(package_dir) or recorded(package_dir) or RELEASE
    record(version, package_dir)
    return version


__version__ = recorded() or RELEASE

if __name__ == "__main__":
    try:
        built = build_version()
    except TagMismatch as e:
        raise SystemExit(str(e)) from None
    for other in sys.argv[1:]:
        record(built, other)
    print(built)
