# SPDX-License-Identifier: MIT
"""The version (client/vmgenid/version.py, both distributions'): a later
commit's build sorts after an earlier one's for pip and for dpkg, the
commit tagged as the release builds as the release exactly, for the
client and the daemon alike, and the release it names is the top of
debian/changelog."""

import datetime
import re
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st
from packaging.version import Version

from tests.harness.cache import REPO_ROOT
from vmgenid import version

# The two distributions' packages, each versioned by the scheme.
PACKAGES = ("client/vmgenid", "cuse_vmgenid")
SCHEME = "client/vmgenid/version.py"
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


@pytest.mark.parametrize("package", PACKAGES)
def test_this_checkout_builds_as_its_head_commit(package):
    sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse",
                          "--short", "HEAD"], check=True, text=True,
                         capture_output=True).stdout.strip()
    built = version.from_git(str(REPO_ROOT / package))
    assert re.fullmatch(re.escape(version.RELEASE) + r"\+git\d{14}\.g"
                        + sha, built), built


def test_a_tree_inside_another_git_repository_is_not_versioned_by_it(
        tmp_path):
    subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "someone's")
    (tmp_path / "vmgenid-0.1.0" / "vmgenid").mkdir(parents=True)
    shutil.copy(version.__file__, tmp_path / "vmgenid-0.1.0" / "vmgenid")
    assert version.from_git(str(tmp_path / "vmgenid-0.1.0" / "vmgenid")) \
        is None


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
    shutil.copy(version.__file__, path / SCHEME)
    return path


def script(clone) -> subprocess.CompletedProcess:
    """version.py run as tools/build-deb runs it."""
    return subprocess.run([sys.executable, SCHEME, "cuse_vmgenid"],
                          cwd=clone, capture_output=True, text=True)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_commit_tagged_as_the_release_builds_as_the_release_exactly(
        clone, package):
    git(clone, "tag", "-a", "-m", "release", version.TAG)
    built = version.build_version(str(clone / package))
    assert built == version.RELEASE
    assert Version(built).public == built      # no local part: PyPI takes it
    assert version.recorded(str(clone / package)) == version.RELEASE


def test_the_script_prints_the_version_and_records_it_for_both(clone):
    git(clone, "tag", "-a", "-m", "release", version.TAG)
    assert script(clone).stdout == version.RELEASE + "\n"
    for package in PACKAGES:
        assert version.recorded(str(clone / package)) == version.RELEASE


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.parametrize("tag", [None, "experiment", "vmclock-probe"])
def test_a_commit_after_the_release_or_tagged_otherwise_is_a_git_build(
        clone, tag, package):
    git(clone, "tag", version.TAG)
    git(clone, "commit", "-q", "--allow-empty", "-m", "after the release")
    if tag:
        git(clone, "tag", tag)
    built = version.build_version(str(clone / package))
    sha = git(clone, "rev-parse", "--short", "HEAD")
    assert re.fullmatch(re.escape(version.RELEASE) + r"\+git\d{14}\.g"
                        + sha, built), built
    assert Version(built) > Version(version.RELEASE)


def test_a_commit_tagged_as_another_release_does_not_build(clone):
    git(clone, "tag", "v99.0.0")
    with pytest.raises(version.TagMismatch, match="tagged v99.0.0, but"):
        version.build_version(str(clone / "client" / "vmgenid"))
    proc = script(clone)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith("cuse-vmgenid: the commit is tagged "
                                  "v99.0.0, but"), proc.stderr
