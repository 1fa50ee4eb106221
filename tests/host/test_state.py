# SPDX-License-Identifier: MIT
"""The generation state machine, one row of docs/interface.rst at a time.

Plus the two races of the v2 review ("Is this racy?" on close, "Same
question here" on write): a generation change landing between the
"is it outdated?" test and the count change.
"""

import errno
import struct
import sys
import threading
from contextlib import contextmanager

import pytest

from cuse_vmgenid._cuse import ffi
from cuse_vmgenid.device.errors import DeviceError
from cuse_vmgenid.device.state import COUNTER_MAX, MIN_TARGET_MAX

from .statemachine import Blocked, Completion, StateMachine


def counter_bytes(value):
    return struct.pack("=I", value)


@contextmanager
def raises_errno(err):
    with pytest.raises(DeviceError) as info:
        yield info
    assert info.value.errno == err, info.value


def completions(changes):
    return {c.token: (c.result, c.error) for c in changes.completions}


def outdated_watcher(state, uid=1000):
    """A watcher made outdated by one bump."""
    wid = state.open(uid)
    state.bump()
    return wid


# -- open -----------------------------------------------------------------

def test_open_makes_an_up_to_date_watcher():
    state = StateMachine(counter=7)
    wid = state.open(1000)
    assert state.snapshot()["watchers"][wid][2] == 7
    assert state.outdated_count() == 0
    assert state.poll(wid)[0] is False


def test_open_past_the_per_uid_cap_fails_edquot():
    state = StateMachine(max_watchers_per_uid=2)
    state.open(1000)
    state.open(1000)
    with raises_errno(errno.EDQUOT):
        state.open(1000)
    assert state.watcher_count() == 2
    state.open(1001)  # the cap is per uid
    assert state.watcher_count() == 3


def test_uid_0_is_exempt_from_the_watcher_cap():
    state = StateMachine(max_watchers_per_uid=1)
    for _ in range(5):
        state.open(0)
    assert state.watcher_count() == 5


def test_release_frees_a_slot_under_the_cap():
    state = StateMachine(max_watchers_per_uid=1)
    wid = state.open(1000)
    with raises_errno(errno.EDQUOT):
        state.open(1000)
    state.release(wid)
    state.open(1000)
    assert state.watcher_count() == 1


# -- read -----------------------------------------------------------------

def test_read_of_zero_bytes_returns_nothing():
    state = StateMachine()
    wid = outdated_watcher(state)
    assert state.read(wid, 0, nonblock=False) == b""
    assert state.pending_count() == 0


@pytest.mark.parametrize("size", [1, 2, 3])
def test_read_shorter_than_the_counter_fails_einval(size):
    state = StateMachine()
    wid = outdated_watcher(state)
    with raises_errno(errno.EINVAL):
        state.read(wid, size, nonblock=False)


@pytest.mark.parametrize("size", [4, 4096])
def test_read_while_outdated_returns_the_counter_without_acking(size):
    state = StateMachine(counter=41)
    wid = outdated_watcher(state)
    assert state.read(wid, size, nonblock=False) == counter_bytes(42)
    assert state.read(wid, size, nonblock=True) == counter_bytes(42)
    assert state.outdated_count() == 1
    assert state.snapshot()["watchers"][wid][2] == 41


def test_nonblocking_read_while_up_to_date_fails_eagain():
    state = StateMachine()
    wid = state.open(1000)
    with raises_errno(errno.EAGAIN):
        state.read(wid, 4, nonblock=True)
    assert state.pending_count() == 0


def test_blocking_read_while_up_to_date_blocks_at_the_counter():
    """The publisher keeps the read (test_publisher.py): the state machine
    only says at which counter it blocks."""
    state = StateMachine(counter=9)
    wid = state.open(1000)
    assert state.read(wid, 4, nonblock=False) == Blocked(9)
    assert state.pending_count() == 0
    state.bump()
    assert state.read(wid, 4, nonblock=False) == counter_bytes(10)


# -- write (acknowledge) --------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 5, 8])
def test_ack_of_the_wrong_length_fails_einval(size):
    state = StateMachine()
    wid = outdated_watcher(state)
    with raises_errno(errno.EINVAL):
        state.ack(wid, counter_bytes(1)[:size].ljust(size, b"\0"))
    assert state.outdated_count() == 1


@pytest.mark.parametrize("value", [0, 2, 0xFFFFFFFF])
def test_ack_of_a_value_other_than_the_counter_fails_einval(value):
    state = StateMachine()
    wid = outdated_watcher(state)  # counter 1
    with raises_errno(errno.EINVAL):
        state.ack(wid, counter_bytes(value))
    assert state.outdated_count() == 1
    assert state.snapshot()["watchers"][wid][2] == 0


def test_ack_while_up_to_date_changes_nothing():
    state = StateMachine(counter=3)
    outdated = outdated_watcher(state)  # counter 4
    wid = state.open(1000)
    state.wait_watchers(wid, 0, now=0.0, token=1)
    before = state.snapshot()
    changes = state.ack(wid, counter_bytes(4))
    assert (changes.completions, changes.wake, changes.release) == ([], [], [])
    assert state.snapshot() == before
    assert state.poll(outdated)[0] is True


def test_ack_while_outdated_makes_the_watcher_up_to_date():
    state = StateMachine()
    first = state.open(1000)
    second = state.open(1000)
    state.bump()
    assert state.outdated_count() == 2
    state.ack(first, counter_bytes(1))
    assert state.outdated_count() == 1
    assert state.poll(first)[0] is False
    assert state.poll(second)[0] is True


def test_last_ack_completes_wait_watchers_with_zero():
    state = StateMachine()
    outdated = outdated_watcher(state)  # counter 1
    waiter_a = state.open(0)
    waiter_b = state.open(0)
    assert state.wait_watchers(waiter_a, 0, now=0.0, token=1) is None
    assert state.wait_watchers(waiter_b, 500, now=0.0, token=2) is None
    changes = state.ack(outdated, counter_bytes(1))
    assert completions(changes) == {1: (0, 0), 2: (0, 0)}
    assert state.pending_count() == 0


def test_a_hooks_runner_s_watcher_holds_wait_watchers_until_its_ack():
    """cuse-vmgenid-hooks' watcher (hooks.py: it acks once its run ended)
    is a watcher like any other: outdated by every bump, in the snapshot,
    and WAIT_WATCHERS waits for its ack; a run that ended after a newer
    bump cannot ack (EINVAL): the run for the newest one does."""
    state = StateMachine()
    hooks = state.open(0, pid=4242)
    waiter = state.open(0)
    state.bump()
    state.ack(waiter, counter_bytes(1))
    assert state.wait_watchers(waiter, 0, now=0.0, token=1) is None
    changes = state.bump()                  # a change during the hooks
    assert completions(changes) == {1: (None, errno.EINTR)}
    state.ack(waiter, counter_bytes(2))
    assert state.wait_watchers(waiter, 0, now=0.0, token=2) is None
    assert state.snapshot()["watchers"][hooks] == (0, 4242, 0)
    with raises_errno(errno.EINVAL):
        state.ack(hooks, counter_bytes(1))
    changes = state.ack(hooks, counter_bytes(2))
    assert completions(changes) == {2: (0, 0)}
    assert state.outdated_count() == 0


# -- poll -----------------------------------------------------------------

def test_poll_is_ready_exactly_while_outdated():
    state = StateMachine()
    wid = state.open(1000)
    assert state.poll(wid)[0] is False
    state.bump()
    assert state.poll(wid)[0] is True
    state.ack(wid, counter_bytes(1))
    assert state.poll(wid)[0] is False


def test_poll_with_a_new_handle_releases_the_old_one():
    state = StateMachine()
    wid = state.open(1000)
    _, changes = state.poll(wid, "h1")
    assert changes.release == []
    _, changes = state.poll(wid, "h2")
    assert changes.release == ["h1"]
    _, changes = state.poll(wid)  # no handle: keeps h2
    assert changes.release == []
    assert state.bump().wake == ["h2"]


def test_bump_wakes_the_poll_handle_of_every_watcher():
    state = StateMachine()
    handles = {}
    for n in range(3):
        wid = state.open(1000 + n)
        state.poll(wid, f"h{n}")
        handles[wid] = f"h{n}"
    state.open(1000)  # never polled
    assert sorted(state.bump().wake) == ["h0", "h1", "h2"]
    # Handles stay registered: the next bump wakes them again.
    assert sorted(state.bump().wake) == ["h0", "h1", "h2"]


def test_release_destroys_the_watchers_poll_handle():
    state = StateMachine()
    wid = state.open(1000)
    state.poll(wid, "h")
    assert state.release(wid).release == ["h"]
    assert state.bump().wake == []


# -- ioctl VMGENID_WAIT_WATCHERS -------------------------------------------

def test_wait_watchers_returns_zero_at_once_when_nobody_is_outdated():
    state = StateMachine()
    wid = state.open(1000)
    state.open(1000)
    assert state.wait_watchers(wid, 100, now=0.0, token=1) == 0
    assert state.pending_count() == 0


def test_wait_watchers_fails_eintr_when_the_caller_is_outdated():
    state = StateMachine()
    wid = outdated_watcher(state)
    with raises_errno(errno.EINTR):
        state.wait_watchers(wid, 0, now=0.0, token=1)
    assert state.pending_count() == 0


def test_wait_watchers_fails_eintr_when_a_bump_outdates_the_caller():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    assert state.wait_watchers(wid, 0, now=0.0, token=1) is None
    changes = state.bump()
    assert changes.completions == [Completion(1, error=errno.EINTR)]


def test_wait_watchers_fails_etime_once_its_deadline_passes():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    assert state.wait_watchers(wid, 250, now=10.0, token=1) is None
    assert state.expire(10.2).completions == []
    assert state.expire(10.25).completions == [
        Completion(1, error=errno.ETIME)]
    assert state.expire(99.0).completions == []
    assert state.pending_count() == 0


def test_wait_watchers_with_timeout_zero_never_expires():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    state.wait_watchers(wid, 0, now=10.0, token=1)
    assert state.next_deadline() is None
    assert state.expire(1e12).completions == []
    assert state.pending_count() == 1


def test_next_deadline_is_the_earliest_wait_deadline():
    state = StateMachine()
    assert state.next_deadline() is None
    outdated_watcher(state)
    waiter = state.open(0)
    state.wait_watchers(waiter, 3000, now=1.0, token=1)
    state.wait_watchers(waiter, 500, now=2.0, token=2)
    state.wait_watchers(waiter, 0, now=0.0, token=3)
    assert state.next_deadline() == 2.5
    state.expire(2.5)
    assert state.next_deadline() == 4.0


# -- ioctl FORCE_GEN_UPDATE / FORCE_GEN_UPDATE_MIN --------------------------

def test_bump_adds_one_and_outdates_every_watcher():
    state = StateMachine(counter=5)
    for uid in (0, 1000, 1001):
        state.open(uid)
    changes = state.bump()
    assert (changes.bumped, changes.bumped_from) == (True, 5)
    assert state.counter == 6
    assert state.outdated_count() == 3


@pytest.mark.parametrize("counter, minimum, expected", [
    (5, 0, 6),                       # below the counter: still + 1
    (5, 5, 6),                       # a restore of the current generation
    (5, 6, 6),
    (5, 100, 100),                   # a restore from a later snapshot
    (0, MIN_TARGET_MAX, MIN_TARGET_MAX),
])
def test_force_min_sets_the_larger_of_minimum_and_counter_plus_one(
        counter, minimum, expected):
    state = StateMachine(counter=counter)
    changes = state.bump(minimum)
    assert changes.bumped_from == counter
    assert state.counter == expected


@pytest.mark.parametrize("counter, minimum", [
    (0, MIN_TARGET_MAX + 1),
    (0, COUNTER_MAX),
    (MIN_TARGET_MAX, 0),             # counter + 1 is already past the limit
])
def test_force_min_past_0x7fffffff_fails_eoverflow(counter, minimum):
    state = StateMachine(counter=counter)
    wid = state.open(1000)
    with raises_errno(errno.EOVERFLOW):
        state.bump(minimum)
    assert state.counter == counter
    assert state.poll(wid)[0] is False


def test_plain_bump_at_the_counter_maximum_fails_eoverflow():
    state = StateMachine(counter=COUNTER_MAX - 1)
    state.bump()
    assert state.counter == COUNTER_MAX
    with raises_errno(errno.EOVERFLOW):
        state.bump()
    assert state.counter == COUNTER_MAX


def test_counter_never_goes_lower():
    state = StateMachine(counter=1000)
    seen = [state.counter]
    for minimum in (None, 3, 0, None, 999, 1500, 2, None):
        state.bump(minimum)
        seen.append(state.counter)
    assert all(a < b for a, b in zip(seen[:-1], seen[1:], strict=True))


# -- interrupts (FUSE_INTERRUPT) ------------------------------------------

def test_interrupt_answers_a_pending_wait_eintr_exactly_once():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    state.wait_watchers(wid, 100, now=0.0, token=1)
    assert state.interrupt(1).completions == [
        Completion(1, error=errno.EINTR)]
    assert state.interrupt(1).completions == []
    assert state.bump().completions == []
    assert state.expire(1e9).completions == []


def test_interrupt_after_the_call_was_answered_yields_nothing():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    state.wait_watchers(wid, 100, now=0.0, token=1)
    assert len(state.bump().completions) == 1
    assert state.interrupt(1).completions == []


def test_interrupt_of_an_unknown_token_yields_nothing():
    state = StateMachine()
    assert state.interrupt(99).completions == []


# -- release (close of the last reference) ---------------------------------

def test_release_of_an_outdated_watcher_drops_the_outdated_count():
    state = StateMachine()
    first = state.open(1000)
    state.open(1000)
    state.bump()
    state.release(first)
    assert (state.watcher_count(), state.outdated_count()) == (1, 1)


def test_release_of_an_up_to_date_watcher_keeps_the_outdated_count():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(1000)
    state.release(wid)
    assert (state.watcher_count(), state.outdated_count()) == (1, 1)


def test_release_of_the_last_outdated_watcher_completes_waiters_with_zero():
    state = StateMachine()
    outdated = outdated_watcher(state)
    waiter = state.open(0)
    state.wait_watchers(waiter, 0, now=0.0, token=1)
    assert completions(state.release(outdated)) == {1: (0, 0)}
    assert state.outdated_count() == 0


def test_release_answers_the_watchers_own_pending_calls_ebadf():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    other = state.open(0)
    state.wait_watchers(wid, 0, now=0.0, token=1)
    state.wait_watchers(other, 0, now=0.0, token=2)
    changes = state.release(wid)
    assert completions(changes) == {1: (None, errno.EBADF)}
    assert state.pending_count() == 1


def test_calls_on_a_released_watcher_fail_ebadf():
    state = StateMachine()
    wid = state.open(1000)
    state.release(wid)
    for call in (lambda: state.read(wid, 4, False),
                 lambda: state.ack(wid, counter_bytes(0)),
                 lambda: state.poll(wid),
                 lambda: state.wait_watchers(wid, 0, 0.0, 1),
                 lambda: state.release(wid)):
        with raises_errno(errno.EBADF):
            call()


def test_a_token_can_pend_only_once():
    state = StateMachine()
    outdated_watcher(state)
    wid = state.open(0)
    state.wait_watchers(wid, 0, now=0.0, token=1)
    with pytest.raises(ValueError):
        state.wait_watchers(wid, 0, now=0.0, token=1)


# -- adoption: a bump published outside the state machine -------------------

def test_every_transition_first_adopts_what_was_published():
    """The GUID poll thread publishes without the state machine: the next
    transition, whichever it is, sees the new counter."""
    transitions = {
        "read": lambda s, w: s.read(w, 4, nonblock=True),
        "poll": lambda s, w: s.poll(w)[0],
        "outdated_count": lambda s, w: s.outdated_count(),
        "counter": lambda s, w: s.counter,
        "ack": lambda s, w: s.ack(w, counter_bytes(8)),
    }
    for name, transition in transitions.items():
        state = StateMachine(counter=7)
        wid = state.open(1000)
        state.hardware()
        assert transition(state, wid) not in (None, 0), name
        assert state.snapshot()["counter"] == 8, name


def test_adoption_owes_eintr_to_waiters_and_a_wake_up_to_pollers():
    state = StateMachine(counter=3)
    outdated_watcher(state)
    waiter = state.open(0)
    state.poll(waiter, "handle")
    state.wait_watchers(waiter, 0, now=0.0, token=1)
    state.hardware()
    # Owed by the read that adopted it, handed over by the next Changes.
    assert state.read(waiter, 4, nonblock=True) == counter_bytes(5)
    changes = state.adopt()
    assert changes.bumped_from == 4
    assert completions(changes) == {1: (None, errno.EINTR)}
    assert changes.wake == ["handle"]
    assert state.adopt().completions == []      # owed once


def test_a_bump_chosen_before_a_thread_publication_is_chosen_again():
    """The daemon's bump chose 6 while the thread published 6: the
    publisher refuses it, and the bump is chosen again from 6, so both
    changes get a generation of their own."""
    state = StateMachine(counter=5, hookable=True)
    # Right after the bump's first look at the published counter (5).
    state.published.hook = state.hardware
    assert state.bump().bumped_from == 5
    assert state.counter == 7
    assert state.publisher.take().count == 2


# -- the v2 races: a bump between "is it outdated?" and the count change ----
#
# A v2-style implementation (the test and the change under two separate lock
# holds) failed these in nearly every run when they were written.  Each
# worker checks the outdated count in a consistent snapshot after every
# operation, since the next bump resets the count and would hide the damage.

RACE_BURSTS = 8  # fresh threads each time: a new interleaving
RACE_ROUNDS = 2_500


@contextmanager
def fast_thread_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def count_violation(snap):
    """None if the outdated count is exact, else what is wrong."""
    differing = sum(1 for (_, _, acked) in snap["watchers"].values()
                    if acked != snap["counter"])
    if not 0 <= snap["outdated"] <= len(snap["watchers"]):
        return f"outdated out of range: {snap}"
    if snap["outdated"] != differing:
        return f"outdated {snap['outdated']} != {differing} differing: {snap}"
    return None


def hammer_with_bumps(state, operations):
    """RACE_BURSTS times: run each operation RACE_ROUNDS times, one thread
    per operation, while another thread bumps until they are done.
    Returns the violations of the outdated count seen after any operation."""
    violations = []
    failures = []
    done = threading.Event()

    def bump_until_done():
        # The daemon's bumps, and the thread's, published outside the
        # state machine's lock and adopted by the next transition.
        while not done.is_set():
            state.bump()
            state.hardware()

    def repeat(operation):
        try:
            for _ in range(RACE_ROUNDS):
                operation()
                problem = count_violation(state.snapshot())
                if problem:
                    violations.append(problem)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    with fast_thread_switching():
        for _ in range(RACE_BURSTS):
            done.clear()
            bumper = threading.Thread(target=bump_until_done)
            workers = [threading.Thread(target=repeat, args=(op,))
                       for op in operations]
            bumper.start()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            done.set()
            bumper.join()
            if failures:
                raise failures[0]
    return violations


def test_v2_write_race_bump_between_outdated_test_and_ack_count():
    """'Same question here': write() tested "outdated?", a bump came, then
    it stored the old value and dropped the count anyway."""
    state = StateMachine()
    wids = [state.open(1000) for _ in range(4)]
    acks = []

    def ack_current(wid):
        def operation():
            try:
                state.ack(wid, counter_bytes(state.counter))
                acks.append(wid)
            except DeviceError as exc:  # a bump came between the two
                assert exc.errno == errno.EINVAL
        return operation

    violations = hammer_with_bumps(state, [ack_current(w) for w in wids])
    assert not violations, violations[:3]
    assert acks and state.counter > 0
    for wid in wids:
        state.ack(wid, counter_bytes(state.counter))
    assert state.outdated_count() == 0


def test_v2_close_race_bump_between_outdated_test_and_release_count():
    """'Is this racy?': close() tested "outdated?" (no), a bump counted the
    watcher as outdated, then it went without dropping the count."""
    state = StateMachine()
    stayers = [state.open(1000) for _ in range(2)]
    state.bump()

    def open_and_close():
        state.release(state.open(1001))

    violations = hammer_with_bumps(state, [open_and_close])
    assert not violations, violations[:3]
    assert state.watcher_count() == len(stayers)
    assert state.outdated_count() == len(stayers)
    for wid in stayers:
        state.release(wid)
    assert (state.watcher_count(), state.outdated_count()) == (0, 0)


# -- the C state machine's own edges -----------------------------------------

def test_a_stale_id_of_a_reused_slot_fails_ebadf():
    """A watcher id names a slot and its generation: the next open may take
    the slot, never the id."""
    state = StateMachine()
    stale = state.open(1000)
    state.release(stale)
    fresh = state.open(1000)
    assert fresh != stale
    with raises_errno(errno.EBADF):
        state.read(stale, 4, nonblock=True)
    with raises_errno(errno.EAGAIN):
        state.read(fresh, 4, nonblock=True)


def test_figures_change_with_adoption_ack_and_release_only():
    """Changes.figures: the status shows counter, outdated and watchers."""
    state = StateMachine()
    first = state.open(1000)
    second = state.open(1000)
    assert state.bump().figures is True
    assert state.poll(first)[1].figures is False
    assert state.ack(first, counter_bytes(1)).figures is True
    assert state.ack(first, counter_bytes(1)).figures is False  # again
    assert state.expire(1e9).figures is False
    assert state.release(second).figures is True


def test_abort_answers_every_pending_wait_with_its_errno():
    state = StateMachine()
    outdated_watcher(state)
    waiter = state.open(0)
    state.wait_watchers(waiter, 0, now=0.0, token=1)
    state.wait_watchers(waiter, 100, now=0.0, token=2)
    changes = state.abort(errno.ESHUTDOWN)
    assert completions(changes) == {1: (None, errno.ESHUTDOWN),
                                    2: (None, errno.ESHUTDOWN)}
    assert state.pending_count() == 0
    assert state.abort(errno.ESHUTDOWN).completions == []


def test_a_cdata_poll_handle_goes_through_unchanged():
    """The C transport's handles are pointers: they come back as such."""
    state = StateMachine()
    wid = state.open(1000)
    cells = ffi.new("char[2]")
    first, second = ffi.cast("void *", cells), ffi.cast("void *", cells + 1)
    state.poll(wid, first)
    assert state.bump().wake == [first]
    assert state.poll(wid, second)[1].release == [first]
    assert state.release(wid).release == [second]

