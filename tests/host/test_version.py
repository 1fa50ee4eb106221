# SPDX-License-Identifier: MIT
"""The version (cuse_vmgenid/version.py): a later commit's build sorts
after an earlier one's for pip and for dpkg, the commit tagged as the
release builds as the release exactly, and the release it names is the
top of debian/changelog."""

import datetime
import re
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st
from packaging.version import Version

from cuse_vmgenid import version
from tests.harness.cache import REPO_ROOT

# Commit times as the version writes them, and short hashes.
times = st.datetimes(min_value=datetime.datetime(2000, 1, 1),
                     max_value=datetime.datetime(2099, 1, 1))
shas = st.text("0123456789abcdef", min_size=7, max_size=12)


def stamp(when) -> str:
    return when.strftime("%Y%m%d%H%M%S")


@given(times, shas)
def test_the_git_version_is_pep440_and_survives_normalization(when, sha):
    text = version.git_version(stamp(when), sha)
    assert str(Version(text)) == text
    assert Version(text) > Version(version.RELEASE)


@given(times, times, shas, shas)
def test_a_later_commit_sorts_after_an_earlier_one_for_pip(t1, t2, s1, s2):
    if stamp(t1) == stamp(t2):
        return
    early, late = sorted([t1, t2])
    assert Version(version.git_version(stamp(early), s1)) < \
        Version(version.git_version(stamp(late), s2))


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg here")
@settings(max_examples=20, deadline=None)
@given(times, times, shas, shas)
def test_a_later_commit_sorts_after_an_earlier_one_for_dpkg(t1, t2, s1, s2):
    if stamp(t1) == stamp(t2):
        return
    early, late = sorted([t1, t2])
    subprocess.run(["dpkg", "--compare-versions",
                    version.git_version(stamp(early), s1), "lt",
                    version.git_version(stamp(late), s2)], check=True)
    subprocess.run(["dpkg", "--compare-versions", version.RELEASE, "lt",
                    version.git_version(stamp(early), s1)], check=True)


def test_this_checkout_builds_as_its_head_commit():
    sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse",
                          "--short", "HEAD"], check=True, text=True,
                         capture_output=True).stdout.strip()
    built = version.from_git(str(REPO_ROOT))
    assert re.fullmatch(re.escape(version.RELEASE) + r"\+git\d{14}\.g"
                        + sha, built), built


def test_a_tree_inside_another_git_repository_is_not_versioned_by_it(
        tmp_path):
    subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
    (tmp_path / "tree").mkdir()
    assert version.from_git(str(tmp_path / "tree")) is None


def test_the_release_is_the_top_debian_changelog_entry():
    top = (REPO_ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(r"cuse-vmgenid \((.*?)\) ", top)[1] == version.RELEASE


def git(repo, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=test", "-c",
         "user.email=test@example.invalid", *args], check=True,
        capture_output=True, text=True).stdout.strip()


@pytest.fixture
def clone(tmp_path):
    """A clone of this checkout's HEAD, with this checkout's version.py
    (committed or not): its tags are its own."""
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO_ROOT),
                    str(path)], check=True)
    shutil.copy(version.__file__, path / "cuse_vmgenid" / "version.py")
    return path


def script(clone) -> subprocess.CompletedProcess:
    """version.py run as tools/build-deb runs it."""
    return subprocess.run([sys.executable, "cuse_vmgenid/version.py"],
                          cwd=clone, capture_output=True, text=True)


def test_the_commit_tagged_as_the_release_builds_as_the_release_exactly(
        clone):
    git(clone, "tag", "-a", "-m", "release", version.TAG)
    built = version.build_version(str(clone / "cuse_vmgenid"))
    assert built == version.RELEASE
    assert Version(built).public == built      # no local part: PyPI takes it
    assert version.recorded(str(clone / "cuse_vmgenid")) == version.RELEASE
    assert script(clone).stdout == version.RELEASE + "\n"


@pytest.mark.parametrize("tag", [None, "experiment", "vmclock-probe"])
def test_a_commit_after_the_release_or_tagged_otherwise_is_a_git_build(
        clone, tag):
    git(clone, "tag", version.TAG)
    git(clone, "commit", "-q", "--allow-empty", "-m", "after the release")
    if tag:
        git(clone, "tag", tag)
    built = version.build_version(str(clone / "cuse_vmgenid"))
    sha = git(clone, "rev-parse", "--short", "HEAD")
    assert re.fullmatch(re.escape(version.RELEASE) + r"\+git\d{14}\.g"
                        + sha, built), built
    assert Version(built) > Version(version.RELEASE)


def test_a_commit_tagged_as_another_release_does_not_build(clone):
    git(clone, "tag", "v99.0.0")
    with pytest.raises(version.TagMismatch, match="tagged v99.0.0, but"):
        version.build_version(str(clone / "cuse_vmgenid"))
    proc = script(clone)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("cuse-vmgenid: the commit is tagged "
                                  "v99.0.0, but"), proc.stderr
