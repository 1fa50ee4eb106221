# SPDX-License-Identifier: MIT
"""Which build of the cffi shim the host tests run (conftest.py): the one
with the C test hooks, or VMGENID_SHIM's, and then a sanitized one that
does catch a fault; and that the package's own build has no test hook."""

import os
import subprocess
import sys

import pytest

import cuse_vmgenid
from cuse_vmgenid import _cuse

from .conftest import SANITIZED_SHIM, SHIM, sanitizer_env

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# A read of 16 bytes from a 4-byte buffer, in the shim's C, with the shim
# conftest.py loads.  With PYTHONMALLOC=malloc the buffer is ASan's own
# allocation.
OVERFLOW = f"""
import sys
sys.path.insert(0, {HERE!r})
import conftest
from cuse_vmgenid._cuse import ffi, lib
lib.vmgenid_guid_format(ffi.new("unsigned char[]", 4), ffi.new("char[]", 64))
"""


# native/shim/testing.h's functions: only in the tests' builds.
TEST_HOOKS = ("vmgenid_state_snapshot", "vmgenid_publisher_counter",
              "vmgenid_counter_load")


def test_the_shim_is_the_build_asked_for():
    assert os.path.samefile(_cuse.__file__, SHIM)
    assert all(hasattr(_cuse.lib, name) for name in TEST_HOOKS)


def test_the_packages_shim_has_no_test_hook():
    """The tree's module, which the wheel ships: built without
    VMGENID_TESTING, no test hook among its symbols."""
    package = os.path.join(os.path.dirname(cuse_vmgenid.__file__),
                           os.path.basename(_cuse.__file__))
    with open(package, "rb") as f:
        symbols = f.read()
    assert b"vmgenid_state_new\0" in symbols       # the names are there
    assert [name for name in TEST_HOOKS
            if name.encode() + b"\0" in symbols] == []


@pytest.mark.skipif(not SANITIZED_SHIM, reason="tools/run-tests' sanitized "
                    "suite: VMGENID_SHIM names a build with ASan")
def test_the_sanitized_shim_reports_an_overflow():
    env = dict(os.environ, **sanitizer_env, PYTHONMALLOC="malloc")
    proc = subprocess.run([sys.executable, "-c", OVERFLOW], env=env,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode != 0
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in proc.stderr
    assert "vmgenid_guid_format" in proc.stderr
