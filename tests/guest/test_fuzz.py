# SPDX-License-Identifier: MIT
"""The fuzzer (native/tests/vmgenid-fuzz.c) against the real daemon, as
root and as nobody at once.

Each run prints its seed, operation count and wall time in the test log
(`tools/run-tests` shows it).  To replay a failure, set VMGENID_FUZZ_SEED
to the printed seed; VMGENID_FUZZ_SECONDS sets the time per run (default
50, both users at once: about a minute of the suite's guest time per
kernel, with the daemon's start).
"""

import os
import random
import time

from .device import native
from .processes import HANG, NOBODY, Child


def test_fuzz_as_root_and_nobody(daemon, capsys):
    seed = int(os.environ.get("VMGENID_FUZZ_SEED")
               or random.SystemRandom().randrange(1 << 32))
    seconds = float(os.environ.get("VMGENID_FUZZ_SECONDS", "50"))
    page_fd = os.open(daemon.page, os.O_RDONLY)   # nobody cannot open it
    try:
        argv = [native("vmgenid-fuzz"), "-t", seconds, "-P",
                daemon.proc.pid, "-f", page_fd]
        start = time.monotonic()
        fuzzers = {"root": Child([*argv, "-s", seed], pass_fds=(page_fd,)),
                   "nobody": Child([*NOBODY, *argv, "-s", seed + 1],
                                   pass_fds=(page_fd,))}
        results = {}
        for who, child in fuzzers.items():
            with child:
                results[who] = (child.output(timeout=seconds + HANG),
                                child.wait())
        wall = time.monotonic() - start
    finally:
        os.close(page_fd)
    with capsys.disabled():
        print(f"\nfuzz: seed {seed} (VMGENID_FUZZ_SEED), {seconds:g} s per "
              f"user, wall {wall:.1f} s")
        for who, (out, rc) in results.items():
            print(f"fuzz as {who}: exit {rc}: {out.strip()}")
    for who, (out, rc) in results.items():
        assert rc == 0 and out.startswith("fuzz seed="), (who, out,
                                                           daemon.log())
        fields = dict(f.split("=", 1) for f in out.split()[1:])
        assert int(fields["ops"]) > 0 and int(fields["batches"]) > 0
    assert daemon.proc.poll() is None, daemon.log()
    assert "Traceback" not in daemon.log()
