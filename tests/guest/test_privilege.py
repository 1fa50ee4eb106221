# SPDX-License-Identifier: MIT
"""docs/interface.rst, Privilege: who may change the generation.

FORCE_GEN_UPDATE, FORCE_GEN_UPDATE_MIN and NOTIFY need CAP_CHECKPOINT_RESTORE
or CAP_SYS_ADMIN in the calling thread's effective set, in the daemon's own
user namespace.  Each call goes through the C helper `vmgenid-ioctl`, whose
output line (`ioctl=... ret=... errno=...`) proves that the open worked and
the ioctl itself gave the answer.  The identity each helper runs under is
proven first, by running grep on /proc/self/status through the same
setpriv/unshare line.  A refused call must leave the counter as it was.
"""

import os
import subprocess

import pytest

from .device import force, open_device, outdated, page_counter, vmgenid_ioctl
from .processes import HANG, NOBODY

USERNS_ROOT = ("unshare", "-Ur")
CAP_BITS = {"net_admin": 12, "dac_override": 1, "sys_admin": 21,
            "checkpoint_restore": 40}
ALL_CAPS_FLOOR = (1 << 41) - 1   # at least caps 0..40: everything we know of

CHANGES = {
    # helper args: (ioctl name, ret when allowed, counter change)
    ("force",): ("VMGENID_FORCE_GEN_UPDATE", 0),
    ("force-min", "0"): ("VMGENID_FORCE_GEN_UPDATE_MIN", 0),
    ("notify",): ("VMGENID_NOTIFY", 1),        # --source none: always bumps
}


def nobody_with(cap: str) -> tuple:
    """uid/gid 65534 holding only `cap`, as an ambient capability, in our
    user namespace (checked); the prefix that runs a program so."""
    prefix = (*NOBODY, f"--inh-caps=+{cap}", f"--ambient-caps=+{cap}")
    who = identity(prefix)
    assert (who["uid"], who["euid"]) == (65534, 65534)
    assert who["capeff"] == 1 << CAP_BITS[cap], hex(who["capeff"])
    assert who["userns"] == our_userns()
    return prefix


def identity(prefix: tuple) -> dict:
    """Uid, CapEff and user namespace of a program run through `prefix`."""
    proc = subprocess.run(
        [*prefix, "/bin/sh", "-c",
         "grep -E '^(Uid|CapEff):' /proc/self/status; "
         "readlink /proc/self/ns/user"],
        capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, (prefix, proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    found = {}
    for line in lines:
        if line.startswith("Uid:"):
            found["uid"] = int(line.split()[1])      # real uid
            found["euid"] = int(line.split()[2])
        elif line.startswith("CapEff:"):
            found["capeff"] = int(line.split()[1], 16)
        elif line.startswith("user:["):
            found["userns"] = line
    assert set(found) == {"uid", "euid", "capeff", "userns"}, proc.stdout
    return found


def assert_all_allowed(daemon, prefix: tuple) -> None:
    for args, (name, ret) in CHANGES.items():
        before = page_counter(daemon)
        fields, rc = vmgenid_ioctl(*args, prefix=prefix)
        assert fields == {"ioctl": name, "ret": ret, "errno": "0"}, \
            (prefix, args, daemon.log())
        assert rc == 0
        assert page_counter(daemon) == before + 1, (prefix, args)


def assert_all_refused(daemon, prefix: tuple) -> None:
    for args, (name, _) in CHANGES.items():
        before = page_counter(daemon)
        fields, rc = vmgenid_ioctl(*args, prefix=prefix)
        assert fields == {"ioctl": name, "ret": -1, "errno": "EACCES"}, \
            (prefix, args, daemon.log())
        assert rc == 1
        assert page_counter(daemon) == before, (prefix, args)


def our_userns() -> str:
    return os.readlink("/proc/self/ns/user")


# -- root ---------------------------------------------------------------------

def test_root_may_force_force_min_and_notify(daemon):
    me = identity(())
    assert me["uid"] == 0
    assert me["capeff"] & (1 << CAP_BITS["sys_admin"])
    assert_all_allowed(daemon, ())
    assert page_counter(daemon) == 3


# -- refused --------------------------------------------------------------------

def test_unprivileged_user_is_refused_but_may_count_outdated(daemon):
    who = identity(NOBODY)
    assert (who["uid"], who["euid"], who["capeff"]) == (65534, 65534, 0)
    holder = open_device()          # root's watcher, left outdated
    try:
        force(holder)
        assert_all_refused(daemon, NOBODY)
        assert page_counter(daemon) == 1
        # The node is 0666: watching and counting need no privilege.
        fields, rc = vmgenid_ioctl("outdated", prefix=NOBODY)
        assert fields == {"ioctl": "VMGENID_GET_OUTDATED_WATCHERS",
                          "ret": 1, "errno": "0"}
        assert rc == 0
        assert outdated(holder) == 1
    finally:
        os.close(holder)


def test_root_of_a_new_user_namespace_is_refused(daemon):
    who = identity(USERNS_ROOT)
    # Inside it, root with every capability there is ...
    assert who["euid"] == 0
    assert who["capeff"] & ALL_CAPS_FLOOR == ALL_CAPS_FLOOR
    # ... but not in the daemon's user namespace.
    assert who["userns"] != our_userns()
    assert_all_refused(daemon, USERNS_ROOT)
    assert page_counter(daemon) == 0


@pytest.mark.parametrize("cap", ["net_admin", "dac_override"])
def test_unprivileged_user_with_an_unrelated_capability_is_refused(daemon,
                                                                   cap):
    prefix = nobody_with(cap)
    assert_all_refused(daemon, prefix)
    assert page_counter(daemon) == 0


# -- allowed by capability ------------------------------------------------------

@pytest.mark.parametrize("cap", ["checkpoint_restore", "sys_admin"])
def test_unprivileged_user_with_one_change_capability_is_allowed(daemon,
                                                                 cap):
    prefix = nobody_with(cap)
    assert_all_allowed(daemon, prefix)
    assert page_counter(daemon) == 3
