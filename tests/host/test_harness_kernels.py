# SPDX-License-Identifier: MIT
"""The harness's choice of guest kernels and of the Debian mirror for
suites other than the machine's own (tests/harness/kernels.py,
aptsuite.py): pure parsing, no apt."""

import re

import pytest

from tests.harness.aptsuite import FALLBACK_MIRROR, mirror_uri
from tests.harness.kernels import FLAVOURS, version_key

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
"""


@pytest.mark.parametrize("name, text, uri", [
    ("debian.sources", DEB822, "http://mirror.example/debian"),
    ("sources.list", "deb http://m.example/debian/ bookworm main\n",
     "http://m.example/debian"),
    ("sources.list", "deb [arch=amd64 signed-by=/k.gpg] "
     "https://m.example/debian bookworm main\n", "https://m.example/debian"),
    ("sources.list", "# deb http://m.example/debian bookworm main\n"
     "deb http://m.example/debian-security bookworm-security main\n",
     FALLBACK_MIRROR),
])
def test_the_mirror_is_the_machines_debian_uri(tmp_path, name, text, uri):
    source = tmp_path / name
    source.write_text(text)
    assert mirror_uri([tmp_path / "missing.list", source]) == uri


@pytest.mark.parametrize("flavour, release, accepted", [
    ("5.10", "5.10.0-32-amd64", True),
    ("5.10", "5.10.0-32-cloud-amd64", False),
    ("6.1", "6.1.0-57-amd64", True),
    ("6.12", "6.12.118+deb12-amd64", True),
    ("6.12", "6.12.118+deb12-rt-amd64", False),
    ("newest", "7.2.13+deb14-amd64", True),
    ("newest", "7.10-amd64", True),
    ("newest", "7.2.13+deb14-cloud-amd64", False),
    ("newest", "7.2.13+deb14-rt-amd64", False),
])
def test_each_flavour_takes_the_plain_amd64_kernels_only(
        flavour, release, accepted):
    assert bool(re.fullmatch(FLAVOURS[flavour].release, release)) == accepted


def test_the_newest_release_is_compared_by_number_not_text():
    releases = ["7.9.1+deb14-amd64", "7.10.0+deb14-amd64", "6.19-amd64"]
    assert max(releases, key=version_key) == "7.10.0+deb14-amd64"
