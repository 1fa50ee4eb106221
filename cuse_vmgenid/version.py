# SPDX-License-Identifier: MIT
"""The project's version, in one place.

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

setup.py records the version it builds as _version.py (not in git), the
file __version__ comes from; a tree without git (a source package, a
git archive) builds with the _version.py it carries, else with RELEASE.
Run as a script, it prints the version of the tree it sits in and
records it: tools/build-deb does that before copying the tree.
"""

import os
import subprocess
from typing import Optional

RELEASE = "0.1.0"
# The tag of a release commit.
TAG = f"v{RELEASE}"

RECORD = "_version.py"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class TagMismatch(Exception):
    """The commit is tagged as a release other than RELEASE."""


def from_git(root: str) -> Optional[str]:
    """RELEASE for the commit checked out at @root (the top of its own git
    tree) if it is tagged TAG, else RELEASE+git...; None if @root is not
    the top of a git tree (a parent directory's git repository says
    nothing about this tree).  Raises TagMismatch if the commit is tagged
    as another release."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", root, *args], check=True, capture_output=True,
            text=True, env={**os.environ, "TZ": "UTC"}).stdout.strip()
    try:
        top = git("rev-parse", "--show-toplevel")
        if os.path.realpath(top) != os.path.realpath(root):
            return None
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
            f"cuse_vmgenid/version.py's RELEASE is {RELEASE}: a release "
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
    text = ("# Written by cuse_vmgenid/version.py at build time; "
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
    """The version a build of the tree around @package_dir gets, recorded
    for __version__.  Raises TagMismatch (from_git)."""
    version = (from_git(os.path.dirname(package_dir))
               or recorded(package_dir) or RELEASE)
    record(version, package_dir)
    return version


__version__ = recorded() or RELEASE

if __name__ == "__main__":
    try:
        print(build_version())
    except TagMismatch as e:
        raise SystemExit(str(e)) from None
