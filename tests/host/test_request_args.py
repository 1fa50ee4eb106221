# SPDX-License-Identifier: MIT
"""The request handlers' argument decoding over the full integer ranges
(issue 12): every ioctl argument, read size and write payload a caller can
send gets a result or the contract's errno, and the loop's poll timeout
stays within what poll(2) takes."""

import errno
import struct

from hypothesis import given, strategies as st

from cuse_vmgenid.device import ioctls
from cuse_vmgenid._cuse import lib
from cuse_vmgenid.service.daemon import MAX_POLL_MS, poll_timeout_ms
from cuse_vmgenid.device.errors import DeviceError
from cuse_vmgenid.device.state import COUNTER_MAX, MIN_TARGET_MAX

from .statemachine import StateMachine

ULONG = st.integers(0, (1 << 64) - 1)
U32 = st.integers(0, COUNTER_MAX)
NOW = st.floats(0, 1e9)          # CLOCK_MONOTONIC seconds: up to ~30 years


def errno_of(call, *args):
    try:
        call(*args)
    except DeviceError as e:
        return e.errno
    return 0


@given(ULONG)
def test_wait_timeout_is_a_u32_and_every_u32_is_itself(arg):
    timeout = lib.vmgenid_transport_wait_timeout_ms(arg)
    assert 0 <= timeout <= COUNTER_MAX
    assert timeout == arg if arg <= COUNTER_MAX else timeout == COUNTER_MAX


@given(st.binary(max_size=64))
def test_force_min_takes_exactly_four_bytes(data):
    if len(data) == 4:
        assert ioctls.force_min_value(data) == struct.unpack("=I", data)[0]
    else:
        assert errno_of(ioctls.force_min_value, data) == errno.EINVAL


@given(ULONG, NOW, st.floats(0, 1e7))
def test_any_wait_timeout_gives_a_poll_timeout_poll_takes(arg, now, later):
    """0xffffffff killed the daemon: poll() refused its timeout."""
    state = StateMachine()
    waiter = state.open(1)
    state.open(2)
    state.bump()
    state.ack(waiter, struct.pack("=I", 1))      # one other is outdated
    timeout = lib.vmgenid_transport_wait_timeout_ms(arg)
    assert state.wait_watchers(waiter, timeout, now, 1) is None
    deadline = state.next_deadline()
    assert (deadline is None) == (timeout == 0)
    ms = poll_timeout_ms((deadline, None), now + later)
    assert -1 <= ms <= MAX_POLL_MS and (ms == -1) == (deadline is None)
    if deadline is not None:
        assert state.expire(deadline).completions[0].error == errno.ETIME


@given(st.lists(st.one_of(st.none(), st.floats(-1e12, 1e12)), max_size=4),
       NOW)
def test_poll_timeout_in_range_for_any_deadlines(deadlines, now):
    ms = poll_timeout_ms(deadlines, now)
    assert -1 <= ms <= MAX_POLL_MS
    assert (ms == -1) == all(d is None for d in deadlines)


@given(U32, st.one_of(st.none(), U32))
def test_force_min_over_u32_never_lowers_the_counter(start, minimum):
    state = StateMachine(start)
    err = errno_of(state.bump, minimum)
    if err:
        assert err == errno.EOVERFLOW and state.counter == start
        target = start + 1 if minimum is None else max(minimum, start + 1)
        assert target > (COUNTER_MAX if minimum is None else MIN_TARGET_MAX)
    else:
        assert state.counter > start


@given(ULONG, st.booleans())
def test_read_of_any_size(size, nonblock):
    state = StateMachine()
    wid = state.open(1)
    err = errno_of(state.read, wid, size, nonblock)
    if size == 0:
        assert err == 0
    elif size < 4:
        assert err == errno.EINVAL
    else:
        assert err == (errno.EAGAIN if nonblock else 0)


@given(st.binary(max_size=16), U32)
def test_write_of_any_payload(data, counter):
    state = StateMachine(counter)
    wid = state.open(1)
    err = errno_of(state.ack, wid, data)
    ok = data == struct.pack("=I", counter)
    assert err == (0 if ok else errno.EINVAL)
