# SPDX-License-Identifier: MIT
"""The publisher (native/shim/publisher.c) under threads, with its real state
file and page: native/tests/publisher-race.c runs blocked reads' waits,
interrupts, the daemon's compare-and-publish, the GUID poll thread's bumps
and a page client at once, and checks every reply (one per read, never an
old counter) and the end state itself.  Here it runs built with
ThreadSanitizer, plainly under Helgrind (native/tests/publisher-race.supp
says what is suppressed and why), and on its own from VMGENID_NATIVE_BUILD
(in the sanitized suite: with ASan and UBSan)."""

import os
import platform
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NATIVE = os.path.join(REPO, "native")
# Helgrind needs a build without sanitizers: always native/build's.
PLAIN = os.path.join("build", "publisher-race")
NATIVE_BUILD = os.path.join(REPO, os.environ.get(
    "VMGENID_NATIVE_BUILD", os.path.join("native", "build")))
TSAN = os.path.join("build", "tsan", "publisher-race")
SUPPRESSIONS = os.path.join(NATIVE, "tests", "publisher-race.supp")
PUBLICATIONS = "500"            # by each of the two publishers
# Not a timing: the bound on a hang (a lost wake-up in a wait loop).
HANG = 600


def build(target: str, program: str) -> str:
    proc = subprocess.run(["make", "-s", "-C", NATIVE, target],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return os.path.join(NATIVE, program)


def run(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=HANG)
    # Its own checks: one reply per read, the end state.
    assert "violations=0" in proc.stdout, proc.stdout + proc.stderr
    return proc


def test_threadsanitizer_finds_no_race_in_the_publisher(tmp_path):
    program = build("tsan", TSAN)
    # gcc 12's TSan cannot place its shadow memory when the kernel
    # randomizes mmap with more bits than it expects (vm.mmap_rnd_bits of
    # newer kernels): without ASLR it always can.
    proc = run(["setarch", platform.machine(), "-R", program, PUBLICATIONS],
               tmp_path)
    assert "WARNING: ThreadSanitizer" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helgrind_finds_no_race_in_the_publisher(tmp_path):
    valgrind = shutil.which("valgrind")
    assert valgrind, "valgrind missing: tools/bootstrap installs it"
    program = build(PLAIN, PLAIN)
    proc = run([valgrind, "--tool=helgrind", "--error-exitcode=1",
                f"--suppressions={SUPPRESSIONS}", program, PUBLICATIONS],
               tmp_path)
    assert "ERROR SUMMARY: 0 errors" in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_publisher_keeps_its_rules_under_threads(tmp_path):
    program = os.path.join(NATIVE_BUILD, "publisher-race")
    assert os.access(program, os.X_OK), \
        f"{program} missing: run `make -C native` first"
    proc = run([program, PUBLICATIONS], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
