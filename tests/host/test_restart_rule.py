# SPDX-License-Identifier: MIT
"""The restart rule's counter (docs/interface.rst, "The restart rule"; issue
20, item 5): the state file of this boot is the authority, the page only
its output, read only for a value the daemon could have written: ahead
of the state file (a commit failed; clients may have seen it) or without
a state file for this boot.  Never behind what a client saw."""

from hypothesis import given
from hypothesis import strategies as st

from cuse_vmgenid.device.state import COUNTER_MAX
from cuse_vmgenid.device.statefile import (PAGE_TRUSTED_MAX, SavedState,
                                           page_limit, resume)

BOOT = "boot-1"
PAGE = "/run/vmgenid/page"
COUNTERS = st.integers(0, COUNTER_MAX)
PAGES = st.one_of(st.none(), COUNTERS)     # None: the page was created


@given(COUNTERS, PAGES)
def test_same_boot_resumes_at_the_state_file_or_the_page_ahead_of_it(
        saved, page):
    r = resume(SavedState(BOOT, saved), BOOT, page, PAGE)
    assert r.same_boot
    if page is not None and saved < page <= page_limit(saved):
        # Clients may have seen it: resumed from, and a change counted.
        assert r.counter == page and r.bump_why
        assert f"holds {page}, ahead of the state file's {saved} " \
            in r.warning
        return
    assert (r.counter, r.bump_why) == (saved, None)
    if page == saved:
        assert r.warning is None
    else:
        # One line, naming both values.
        assert PAGE in r.warning and f"resuming at {saved} " in r.warning
        assert ("missing" if page is None else f"held {page},") in r.warning


@given(st.booleans(), COUNTERS, PAGES)
def test_never_behind_a_counter_clients_could_have_seen(has_state, saved,
                                                         page):
    """A page value the daemon could have published (up to page_limit())
    is never served again for another world: the daemon resumes at or
    above it, and if at it, counts a change unless the state file holds it
    too (then the change source decides, as after any stop)."""
    r = resume(SavedState(BOOT, saved) if has_state else None, BOOT, page,
               PAGE)
    if page is not None and page <= page_limit(saved if has_state
                                               else None):
        assert r.counter >= page
        if r.counter == page:
            assert r.bump_why or (has_state and saved == page)


def test_past_0x7fffffff_a_page_ahead_is_resumed_from_but_never_all_ones():
    """Root's FORCE_GEN_UPDATE_MIN took the counter past 0x7fffffff, then
    a commit failed: the page ahead is what clients saw.  Only 0xffffffff,
    from which no change could be counted, is repaired."""
    r = resume(SavedState(BOOT, 0x80000000), BOOT, 0x80000001, PAGE)
    assert (r.counter, bool(r.bump_why)) == (0x80000001, True)
    r = resume(SavedState(BOOT, 0x80000000), BOOT, 0xFFFFFFFF, PAGE)
    assert (r.counter, r.bump_why) == (0x80000000, None)
    assert "held 4294967295, which the state file does not back" in r.warning
    r = resume(SavedState(BOOT, 5), BOOT, 0x80000000, PAGE)
    assert (r.counter, r.bump_why) == (5, None)


def test_a_page_of_all_ones_is_repaired_from_the_state_file():
    r = resume(SavedState(BOOT, 2), BOOT, 0xFFFFFFFF, PAGE)
    assert r.counter == 2
    assert "held 4294967295, which the state file does not back" in r.warning


@given(st.one_of(st.none(), st.just("boot-0")), PAGES, COUNTERS)
def test_without_a_state_file_of_this_boot_a_counter_page_is_read(
        other_boot, page, saved):
    saved_state = None if other_boot is None else SavedState(other_boot,
                                                             saved)
    r = resume(saved_state, BOOT, page, PAGE)
    assert not r.same_boot
    if page is None:        # a new boot: nothing to resume from
        assert (r.counter, r.bump_why, r.warning) == (0, None, None)
        return
    # One change counted, and the counter never taken from junk.
    assert r.bump_why == "restart without a state file"
    assert r.counter == (page if page <= PAGE_TRUSTED_MAX else 0)
    assert f"holds {page}" in r.warning
    assert r.counter <= PAGE_TRUSTED_MAX
