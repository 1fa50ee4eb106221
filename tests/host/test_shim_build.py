# SPDX-License-Identifier: MIT
"""Which build of the cffi shim the host tests run (conftest.py): the tree's,
or VMGENID_SHIM's, and then a sanitized one that does catch a fault."""

import os
import subprocess
import sys

import pytest

import cuse_vmgenid
from cuse_vmgenid import _cuse

SHIM = os.environ.get("VMGENID_SHIM")
# A read of 16 bytes from a 4-byte buffer, in the shim's C.  With
# PYTHONMALLOC=malloc the buffer is ASan's own allocation.
OVERFLOW = """
import sys
sys.path.insert(0, {tests!r})
import conftest
from cuse_vmgenid._cuse import ffi, lib
out = ffi.new("char[]", 64)
lib.vmgenid_guid_format(ffi.new("unsigned char[]", 4), out)
"""


def test_the_shim_is_the_build_asked_for():
    expected = SHIM or os.path.join(os.path.dirname(cuse_vmgenid.__file__),
                                    os.path.basename(_cuse.__file__))
    assert os.path.samefile(_cuse.__file__, expected)


@pytest.mark.skipif(not SHIM, reason="tools/run-tests' sanitized suite: "
                    "VMGENID_SHIM names a build with ASan")
def test_the_sanitized_shim_reports_an_overflow():
    env = dict(os.environ, PYTHONMALLOC="malloc", VMGENID_SHIM=SHIM,
               LD_PRELOAD=subprocess.run(
                   ["gcc", "-print-file-name=libasan.so"],
                   capture_output=True, text=True,
                   check=True).stdout.strip())
    proc = subprocess.run(
        [sys.executable, "-c",
         OVERFLOW.format(tests=os.path.dirname(__file__))],
        env=env, capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode != 0
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in proc.stderr
    assert "vmgenid_guid_format" in proc.stderr
