# SPDX-License-Identifier: MIT
"""README's `make demo`, run as written from the checkout's root: it boots
a guest, serves /dev/vmgenid, saves the VM and restores it with a new VM
Generation ID, and shows a watcher blocked in read() woken with the new
counter (tools/demo.py prints each step in a line starting "demo: ").

Run on the host (it runs `make bootstrap` first, then boots one guest):
    .venv/bin/python -m pytest -v tests/restore/test_readme_demo.py
"""

import re
import subprocess

from tests.snippets import REPO, snippet

TIMEOUT = 1800      # bootstrap's checks, then tools/demo.py's 900 s waits


def test_readme_make_demo_shows_a_restore_waking_a_watcher():
    block = snippet("README.rst", "make demo")
    done = subprocess.run(["sh", "-c", block], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    # In the order they happen; each step's line is the first after the
    # previous step's.
    shown = [line[len("demo: "):] for line in done.stdout.splitlines()
             if line.startswith("demo: ")]
    steps = [
        ("boot", r"booting a Linux \S+ guest under QEMU with VM Generation "
                 r"ID (\S+) "),
        ("served", r"VM Generation ID in guest memory: (\S+)$"),
        ("blocked", r"watcher \(vmgenid-reader -a\) opened /dev/vmgenid; "
                    r"it is blocked in read\(\)"),
        ("saved", r"saved the VM: QMP stop, migrate to a file"),
        ("restore", r"restoring it in a new QEMU with VM Generation ID "
                    r"(\S+)$"),
        ("running", r"restored and running"),
        ("woken", r"watcher woken: read ret=4 value=1 errno=0$"),
        ("acked", r"watcher acknowledged the new counter: ack ret=4 "
                  r"errno=0$"),
        ("restored", r"VM Generation ID in guest memory: (\S+)$"),
        ("counter", r"counter in the daemon's page: 1$"),
        ("ok", r"OK: (\d+)/(\d+) checks, \d+ s$"),
    ]
    found, line_of, at = {}, {}, 0
    for name, pattern in steps:
        for i in range(at, len(shown)):
            match = re.match(pattern, shown[i])
            if match:
                found[name], line_of[name], at = match, i, i + 1
                break
        else:
            raise AssertionError(f"no {name!r} line ({pattern}) after "
                                 f"{shown[at - 1] if at else 'the start'}:"
                                 "\n" + done.stdout)
    # The daemon's log reaches the host by its own relay: its line may come
    # before or after the watcher's.
    assert any(re.match(r"  daemon log \| .*generation 0 -> 1: GUID changed",
                        line) for line in shown[line_of["running"]:]), \
        done.stdout
    before, after = found["boot"][1], found["restore"][1]
    assert before != after, "the restore gave the VM a new GUID"
    assert found["served"][1] == before, "the guest saw the boot's GUID"
    assert found["restored"][1] == after, "the guest saw the new GUID"
    assert found["ok"][1] == found["ok"][2], found["ok"][0]
