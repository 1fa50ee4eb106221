# SPDX-License-Identifier: MIT
"""The state machine when memory runs out: native/tests/state-nomem.c runs
every transition of native/shim/state.c with each of its realloc() calls
failing in turn, and checks each -ENOMEM left the state, what it owes and
the caller's changes exactly as they were.  Runs from VMGENID_NATIVE_BUILD
(in the sanitized suite: with ASan and UBSan)."""

import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NATIVE_BUILD = os.path.join(REPO, os.environ.get(
    "VMGENID_NATIVE_BUILD", os.path.join("native", "build")))


def test_every_enomem_leaves_the_state_as_it_was():
    program = os.path.join(NATIVE_BUILD, "state-nomem")
    assert os.access(program, os.X_OK), \
        f"{program} missing: run `make -C native` first"
    proc = subprocess.run([program], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = re.fullmatch(r"failures=(\d+) violations=(\d+)\n", proc.stdout)
    assert counts, proc.stdout
    failures, violations = map(int, counts.groups())
    # Not vacuous: allocations did fail.
    assert failures > 10 and violations == 0, proc.stdout + proc.stderr
