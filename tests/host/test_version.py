# SPDX-License-Identifier: MIT
"""The version (cuse_vmgenid/version.py): a later commit's build sorts
after an earlier one's for pip and for dpkg, and the release it names is
the top of debian/changelog."""

import datetime
import re
import shutil
import subprocess

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
