# SPDX-License-Identifier: MIT
"""Our struct vmclock_abi against the kernel's <linux/vmclock-abi.h>
(native/tests/vmclock-layout.c: it does not build if any offset, size or
constant differs).  Bookworm's headers predate it; the harness fetches
Debian sid's linux-libc-dev (tests/harness/headers.py) unless
VMGENID_VMCLOCK_ABI_H names a header already."""

import os
import subprocess

import pytest

from tests.harness.headers import sid_header

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture
def kernel_header() -> str:
    return (os.environ.get("VMGENID_VMCLOCK_ABI_H")
            or str(sid_header("linux/vmclock-abi.h")))


def test_every_field_matches_the_kernels_header(kernel_header):
    proc = subprocess.run(["make", "-s", "-C", "native", "vmclock-layout",
                           f"VMCLOCK_ABI_H={kernel_header}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:-1]]
    assert len(rows) == 23          # every field of struct vmclock_abi
    for field, off, kernel_off, size, kernel_size in rows:
        assert (off, size) == (kernel_off, kernel_size), field
    assert proc.stdout.splitlines()[-1] == "layout ok fields=23 size=112"
