# SPDX-License-Identifier: MIT
"""examples/Makefile as its comment says to use it in a checkout:
`make -C examples` builds the four programs with the tree's header, even
where no vmgenid.pc is installed (issue 21)."""

import os
import subprocess

from tests.harness.cache import REPO_ROOT

PROGRAMS = {"watchdog", "async_epoll", "mmap_probe", "orchestrator"}


def test_make_c_examples_builds_in_a_checkout(tmp_path):
    env = {**os.environ, "PKG_CONFIG_PATH": str(tmp_path / "none"),
           "PKG_CONFIG_LIBDIR": str(tmp_path / "none")}
    run = subprocess.run(["make", "-C", str(REPO_ROOT / "examples"),
                          f"BUILD={tmp_path}"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    built = {p.name for p in tmp_path.iterdir() if os.access(p, os.X_OK)
             and p.is_file()}
    assert built == PROGRAMS
