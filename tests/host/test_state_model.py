# SPDX-License-Identifier: MIT
"""GenerationState driven by hypothesis against an independent model.

The model is plain data (a counter, each watcher's acknowledged value, the
pending WAIT_WATCHERS calls with their deadlines, the poll handles) and the
contract rows of docs/interface.rst written out again, so a mistake has to
be made twice to pass.
Every rule checks results, errnos and completions; after every step the
invariants compare the whole state.  Every token (one blocking-capable
request) must be answered exactly once: at once, or later by exactly one
completion; at teardown everyone closes, which must answer the rest.  A
blocked read is answered by the state machine with the counter it blocks
at (the publisher keeps it: test_publisher.py).

Bumps come two ways, as in the daemon: the daemon's (choose, publish,
adopt) and the GUID poll thread's, published outside the state machine's
lock; the state machine adopts that at its next transition, and what it
owes (EINTR to waits, poll wake-ups) comes out of the next transition
that returns Changes.

VMGENID_MODEL_STEPS sets the total number of rule steps (default 10,000).
"""

import errno
import math
import os
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule,
    run_state_machine_as_test)

from cuse_vmgenid.device.errors import DeviceError
from .statemachine import Blocked, StateMachine

TARGET_STEPS = int(os.environ.get("VMGENID_MODEL_STEPS", "10000"))
STEPS_PER_EXAMPLE = 100

U32_MAX = 0xFFFFFFFF
FORCE_MIN_LIMIT = 0x7FFFFFFF
UIDS = [0, 1000, 1001]
NEVER_OPENED = 0  # the state machine never gives a watcher id 0
NEVER_ISSUED = 0  # tokens count from 1

steps_run = 0
examples_run = 0


def u32(value):
    return struct.pack("=I", value)


def attempt(call, *args):
    """("ok", result) or ("error", errno)."""
    try:
        return "ok", call(*args)
    except DeviceError as exc:
        return "error", exc.errno


class Model:
    """The device contract as plain data."""

    def __init__(self, counter, cap):
        self.counter = counter
        self.cap = cap
        self.watchers = {}  # wid -> {"uid", "pid", "acked", "handle"}
        self.pending = {}   # token -> ("wait", wid, deadline)
        # Owed by an adopted thread bump: completions, wake-ups, from.
        self.owed = ([], [], None)

    def outdated(self):
        return [wid for wid, w in self.watchers.items()
                if w["acked"] != self.counter]

    def held_by(self, uid):
        return sum(1 for w in self.watchers.values() if w["uid"] == uid)

    def waits(self):
        return {token: p for token, p in self.pending.items()
                if p[0] == "wait"}

    def take(self, tokens, result=None, error=0):
        """Remove these pending calls; their expected completions."""
        for token in tokens:
            del self.pending[token]
        return [(token, result, error) for token in tokens]

    def publish(self, target):
        """A bump to target: what adopting it owes, added to the owed."""
        completions, wake, bumped_from = self.owed
        completions = completions + self.take(list(self.waits()),
                                              error=errno.EINTR)
        # Each poll handle is owed one wake-up: a second bump before
        # the hand-over owes none more (handles change only in transitions
        # that hand the owed over first).
        if bumped_from is None:
            wake = wake + [w["handle"] for w in self.watchers.values()
                               if w["handle"] is not None]
            bumped_from = self.counter
        self.counter = target
        self.owed = (completions, wake, bumped_from)

    def take_owed(self):
        owed, self.owed = self.owed, ([], [], None)
        return owed

    def after_drop(self):
        """A watcher stopped being outdated: if none is left, waits get 0."""
        if self.outdated():
            return []
        return self.take(list(self.waits()), result=0)


class GenerationStateVsModel(RuleBasedStateMachine):
    watchers = Bundle("watchers")
    tokens = Bundle("tokens")

    def __init__(self):
        super().__init__()
        self.state = None
        self.model = None
        self.now = 1000.0
        self.issued = set()
        self.answered = set()
        self.wids_seen = {NEVER_OPENED}
        self.next_token = 0
        self.next_handle = 0
        self.highest_counter = 0

    # -- bookkeeping -------------------------------------------------------

    def step(self):
        global steps_run
        steps_run += 1

    def new_token(self):
        self.next_token += 1
        token = self.next_token
        self.issued.add(token)
        return token

    def answer(self, token):
        assert token in self.issued, f"completion for unknown {token}"
        assert token not in self.answered, f"{token} answered twice"
        self.answered.add(token)

    def check_changes(self, changes, completions=(), wake=(), release=(),
                      figures=False):
        """A transition that returns Changes: its own, after what an
        adopted bump owed (a bump changes the figures status shows)."""
        owed_completions, owed_wake, bumped_from = self.model.take_owed()
        completions = owed_completions + list(completions)
        wake = owed_wake + list(wake)
        got = [(c.token, c.result, c.error) for c in changes.completions]
        for token, _, _ in got:
            self.answer(token)
        assert sorted(got, key=repr) == sorted(completions, key=repr)
        assert sorted(changes.wake) == sorted(wake)
        assert sorted(changes.release) == sorted(release)
        assert changes.bumped_from == bumped_from
        assert changes.figures == (figures or bumped_from is not None)

    # -- setup -------------------------------------------------------------

    @initialize(counter=st.sampled_from([0, 1, 0x7FFFFFFD, 0xFFFFFFFE]),
                cap=st.integers(1, 3))
    def start(self, counter, cap):
        global examples_run
        examples_run += 1
        self.state = StateMachine(counter=counter,
                                     max_watchers_per_uid=cap)
        self.model = Model(counter, cap)
        self.highest_counter = counter

    @initialize(target=watchers)
    def a_watcher_that_was_never_opened(self):
        return NEVER_OPENED

    # -- file operations ---------------------------------------------------

    @rule(target=watchers, uid=st.sampled_from(UIDS), pid=st.integers(1, 3))
    def open(self, uid, pid):
        self.step()
        outcome = attempt(self.state.open, uid, pid)
        if uid != 0 and self.model.held_by(uid) >= self.model.cap:
            assert outcome == ("error", errno.EDQUOT)
            return multiple()
        kind, wid = outcome
        assert kind == "ok" and wid not in self.wids_seen
        self.wids_seen.add(wid)
        self.model.watchers[wid] = {"uid": uid, "pid": pid,
                                    "acked": self.model.counter,
                                    "handle": None}
        return wid

    @rule(wid=watchers)
    def release(self, wid):
        self.step()
        self.check_release(wid)

    def check_release(self, wid):
        model = self.model
        if wid not in model.watchers:
            assert attempt(self.state.release, wid) == ("error", errno.EBADF)
            return
        was_outdated = wid in model.outdated()
        gone = model.watchers.pop(wid)
        expected = model.take([t for t, p in model.pending.items()
                               if p[1] == wid], error=errno.EBADF)
        if was_outdated:
            expected += model.after_drop()
        handles = [gone["handle"]] if gone["handle"] is not None else []
        self.check_changes(self.state.release(wid), expected,
                           release=handles, figures=True)

    @rule(target=tokens, wid=watchers,
          size=st.sampled_from([0, 1, 3, 4, 5, 4096]),
          nonblock=st.booleans())
    def read(self, wid, size, nonblock):
        self.step()
        model = self.model
        token = self.new_token()
        outcome = attempt(self.state.read, wid, size, nonblock)
        if wid not in model.watchers:
            expected = ("error", errno.EBADF)
        elif size == 0:
            expected = ("ok", b"")
        elif size < 4:
            expected = ("error", errno.EINVAL)
        elif wid in model.outdated():
            expected = ("ok", u32(model.counter))  # and no acknowledgement
        elif nonblock:
            expected = ("error", errno.EAGAIN)
        else:
            expected = ("ok", Blocked(model.counter))
        assert outcome == expected
        self.answer(token)
        return token

    # Repeated entries weight the valid acknowledgement.
    @rule(wid=watchers,
          value=st.sampled_from(["counter", "counter", "older", "newer", 0]),
          size=st.sampled_from([4, 4, 4, 0, 3, 5, 8]))
    def ack(self, wid, value, size):
        self.step()
        model = self.model
        number = {"counter": model.counter,
                  "older": (model.counter - 1) & U32_MAX,
                  "newer": (model.counter + 1) & U32_MAX}.get(value, value)
        data = u32(number)[:size].ljust(size, b"\x55")
        outcome = attempt(self.state.ack, wid, data)
        if wid not in model.watchers:
            assert outcome == ("error", errno.EBADF)
        elif size != 4 or number != model.counter:
            assert outcome == ("error", errno.EINVAL)
        else:
            kind, changes = outcome
            assert kind == "ok"
            watcher = model.watchers[wid]
            expected = []
            was_outdated = watcher["acked"] != model.counter
            if was_outdated:
                watcher["acked"] = model.counter
                expected = model.after_drop()
            self.check_changes(changes, expected, figures=was_outdated)

    @rule(wid=watchers, new_handle=st.booleans())
    def poll(self, wid, new_handle):
        self.step()
        model = self.model
        handle = None
        if new_handle:
            self.next_handle += 1
            handle = ("handle", self.next_handle)
        outcome = attempt(self.state.poll, wid, handle)
        if wid not in model.watchers:
            assert outcome == ("error", errno.EBADF)
            return
        kind, (ready, changes) = outcome
        assert kind == "ok"
        assert ready == (wid in model.outdated())
        watcher = model.watchers[wid]
        replaced = []
        if handle is not None:
            if watcher["handle"] is not None:
                replaced = [watcher["handle"]]
            watcher["handle"] = handle
        self.check_changes(changes, release=replaced)

    @rule(target=tokens, wid=watchers,
          timeout_ms=st.sampled_from([0, 1, 10, 250, 5000]))
    def wait_watchers(self, wid, timeout_ms):
        self.step()
        model = self.model
        token = self.new_token()
        outcome = attempt(self.state.wait_watchers, wid, timeout_ms,
                          self.now, token)
        if wid not in model.watchers:
            expected = ("error", errno.EBADF)
        elif wid in model.outdated():
            expected = ("error", errno.EINTR)
        elif not model.outdated():
            expected = ("ok", 0)
        else:
            assert outcome == ("ok", None)
            # Same float arithmetic as the daemon: a deadline is a time.
            deadline = self.now + timeout_ms / 1000.0 if timeout_ms else None
            model.pending[token] = ("wait", wid, deadline)
            return token
        assert outcome == expected
        self.answer(token)
        return token

    # -- changes of generation ---------------------------------------------

    def expect_bump(self, outcome, target, limit):
        model = self.model
        if target > limit:
            assert outcome == ("error", errno.EOVERFLOW)
            return
        kind, changes = outcome
        assert kind == "ok"
        model.publish(target)
        self.check_changes(changes)

    @rule()
    def bump(self):
        self.step()
        outcome = attempt(self.state.bump)
        self.expect_bump(outcome, self.model.counter + 1, U32_MAX)

    @rule(offset=st.none() | st.integers(-2, 3),
          absolute=st.sampled_from([0, 5, 0x7FFFFFFE, FORCE_MIN_LIMIT,
                                    FORCE_MIN_LIMIT + 1, U32_MAX]))
    def bump_to_minimum(self, offset, absolute):
        self.step()
        minimum = absolute
        if offset is not None:
            minimum = min(max(self.model.counter + offset, 0), U32_MAX)
        outcome = attempt(self.state.bump, minimum)
        target = max(minimum, self.model.counter + 1)
        self.expect_bump(outcome, target, FORCE_MIN_LIMIT)

    @rule()
    def thread_publishes(self):
        """The GUID poll thread's bump: +1, outside the state machine."""
        self.step()
        if self.model.counter == U32_MAX:
            return      # the publisher refuses (EOVERFLOW), nothing moves
        self.state.hardware()
        self.model.publish(self.model.counter + 1)

    @rule()
    def adopt(self):
        """The daemon's loop, after a batch of requests."""
        self.step()
        self.check_changes(self.state.adopt())

    # -- ends of waiting ---------------------------------------------------

    @rule(token=tokens)
    def interrupt(self, token):
        self.step()
        expected = []
        if token in self.model.pending:
            expected = self.model.take([token], error=errno.EINTR)
        self.check_changes(self.state.interrupt(token), expected)

    @rule()
    def interrupt_a_token_never_issued(self):
        self.step()
        self.check_changes(self.state.interrupt(NEVER_ISSUED))

    @rule(ms=st.sampled_from([0, 1, 9, 10, 100, 250, 1000, 6000]))
    def time_passes(self, ms):
        self.step()
        self.now += ms / 1000.0
        expired = [t for t, p in self.model.waits().items()
                   if p[2] is not None and p[2] <= self.now]
        expected = self.model.take(expired, error=errno.ETIME)
        self.check_changes(self.state.expire(self.now), expected)

    @rule(err=st.sampled_from([errno.ESHUTDOWN, errno.EIO]))
    def abort(self, err):
        """The daemon's end: every pending wait gets err."""
        self.step()
        expected = self.model.take(list(self.model.waits()), error=err)
        self.check_changes(self.state.abort(err), expected)

    # -- after every step --------------------------------------------------

    @invariant()
    def outdated_count_is_exact(self):
        snap = self.state.snapshot()
        differing = sum(1 for (_, _, acked) in snap["watchers"].values()
                        if acked != snap["counter"])
        assert 0 <= snap["outdated"] <= len(snap["watchers"])
        assert snap["outdated"] == differing

    @invariant()
    def listed_outdated_watchers_are_the_oldest_outdated_ones(self):
        # model.watchers is in open order, as outdated() lists them.
        watchers = self.model.watchers
        expected = [(wid, watchers[wid]["uid"], watchers[wid]["pid"],
                     watchers[wid]["acked"])
                    for wid in self.model.outdated()]
        for limit in (0, 1, 3):
            assert self.state.outdated_watchers(limit) == expected[:limit]

    @invariant()
    def counter_never_decreases(self):
        assert self.state.counter >= self.highest_counter
        self.highest_counter = self.state.counter

    @invariant()
    def state_matches_model(self):
        model = self.model
        snap = self.state.snapshot()
        assert snap["counter"] == model.counter
        assert snap["watchers"] == {
            wid: (w["uid"], w["pid"], w["acked"])
            for wid, w in model.watchers.items()}
        assert snap["outdated"] == len(model.outdated())
        assert snap["pending"] == len(model.pending)
        deadlines = [p[2] for p in model.waits().values() if p[2] is not None]
        assert self.state.next_deadline() == min(deadlines, default=None)

    @invariant()
    def every_token_is_answered_or_pending_never_both(self):
        pending = set(self.model.pending)
        owed = {token for token, _, _ in self.model.owed[0]}
        assert not (pending | owed) & self.answered
        assert pending | owed | self.answered == self.issued

    def teardown(self):
        """Everyone closes: whatever was still pending gets its answer."""
        if self.model is None:
            return
        for wid in list(self.model.watchers):
            self.check_release(wid)
        self.check_changes(self.state.adopt())
        assert self.state.pending_count() == 0
        assert self.answered == self.issued


def test_generation_state_matches_the_model(capsys, record_property):
    start, start_examples = steps_run, examples_run
    per_run = settings(max_examples=1, stateful_step_count=STEPS_PER_EXAMPLE,
                       deadline=None, database=None,
                       suppress_health_check=[HealthCheck.too_slow])
    # Hypothesis may end an example before its step budget: run until the
    # target is met rather than trusting max_examples * step count.
    for _ in range(20):
        missing = TARGET_STEPS - (steps_run - start)
        if missing <= 0:
            break
        run_state_machine_as_test(
            GenerationStateVsModel,
            settings=settings(
                per_run,
                max_examples=math.ceil(missing / STEPS_PER_EXAMPLE)))
    done = steps_run - start
    examples = examples_run - start_examples
    record_property("model_steps", done)
    record_property("model_examples", examples)
    with capsys.disabled():
        print(f"\n[model] {done} steps in {examples} examples")
    assert done >= TARGET_STEPS
