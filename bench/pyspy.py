# SPDX-License-Identifier: MIT
"""Profile a running process with py-spy while a workload runs, and boil
the samples down to the functions that took them."""

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
RATE_HZ = 200
ATTACH_SECONDS = 2      # py-spy reads the interpreter's layout first


def record(pid: int, workload) -> list[tuple[list[str], int]]:
    """Samples of @pid (all threads, active only) while workload() runs:
    [(frames outermost first, count)]."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        spy = subprocess.Popen(
            [PY_SPY, "record", "--pid", str(pid), "--rate", str(RATE_HZ),
             "--format", "raw", "--output", out.name, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(ATTACH_SECONDS)
        try:
            workload()
        finally:
            spy.send_signal(signal.SIGINT)    # py-spy writes on SIGINT
            _, err = spy.communicate(timeout=120)
        with open(out.name) as f:
            text = f.read()
    if not text.strip():
        raise RuntimeError(f"py-spy recorded nothing: {err.strip()}")
    samples = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        samples.append((frames, int(count)))
    return samples


def _function(frame: str) -> str:
    """"handle (cuse_vmgenid/device/transport.py:120)" without the line."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\(/.*?/(cuse_vmgenid|client/vmgenid|bench|tests)/", r"(\1/",
                  frame)


def summarize(samples, top: int = 16) -> dict:
    """The functions with the most samples on top of the stack (self, with
    their total beside) and anywhere in it (total), as fractions of all
    samples."""
    total = sum(count for _, count in samples) or 1
    own, anywhere = collections.Counter(), collections.Counter()
    for frames, count in samples:
        names = [_function(f) for f in frames]
        if names:
            own[names[-1]] += count
        for name in set(names):
            anywhere[name] += count
    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "self": [(name, n / total, anywhere[name] / total)
                 for name, n in own.most_common(top)],
        "total": [(name, n / total) for name, n in anywhere.most_common(top)],
    }
