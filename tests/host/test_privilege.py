# SPDX-License-Identifier: MIT
"""The decision on privilege when the daemon's descriptors are used up
(issue 20): never EACCES for the daemon's own failure, and the reserve
lets it decide anyway.  Each case runs in a child process whose
RLIMIT_NOFILE leaves no descriptor free, for real."""

import errno
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import errno, os, resource
    from cuse_vmgenid.device import privilege
    from cuse_vmgenid.device.errors import DeviceError

    def answer(reserve):
        try:
            privilege.authorize_change(os.getpid(), reserve)
            return "allowed"
        except DeviceError as e:
            return errno.errorcode[e.errno]

    plenty = answer(None)
    reserve = privilege.Reserve()
    # Every descriptor below the limit taken: the next open is EMFILE.
    taken = []
    limit = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    while True:
        try:
            taken.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as e:
            assert e.errno == errno.EMFILE, e
            break
    print(plenty, answer(None), answer(reserve), answer(reserve))
""")


def test_out_of_descriptors_is_eagain_and_the_reserve_decides():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    plenty, exhausted, reserved, again = out.stdout.split()
    # Root (CI) is allowed, another user refused: either way, the same
    # answer with the reserve as with plenty of descriptors, twice (the
    # reserve is refilled), and EAGAIN, not EACCES, without it.
    assert plenty == ("allowed" if os.geteuid() == 0 else "EACCES")
    assert exhausted == "EAGAIN", out.stderr
    assert reserved == again == plenty, out.stderr


def test_a_thread_proc_does_not_show_is_refused():
    """hidepid or a thread gone: EACCES, as the contract says (a refusal,
    not the daemon's failure)."""
    from cuse_vmgenid.device import privilege
    from cuse_vmgenid.device.errors import DeviceError
    gone = 2 ** 22 + 1      # above pid_max's default ceiling
    try:
        privilege.authorize_change(gone, privilege.Reserve())
    except DeviceError as e:
        assert e.errno == errno.EACCES
    else:
        raise AssertionError("a thread that does not exist was allowed")
