# SPDX-License-Identifier: MIT
"""The vmgenid package (the client) against the real daemon: value, wait, ack, fileno
with selectors, asyncio, and the client rule after a daemon SIGKILL."""

import asyncio
import errno
import os
import selectors
import threading

import pytest

import vmgenid as client

from .device import (NODE, force_from_elsewhere, open_device, outdated,
                     outdated_now, page_counter)
from .processes import HANG
from .tool_run import start_daemon


@pytest.fixture
def served(daemon_factory, tmp_path):
    return start_daemon(daemon_factory, tmp_path)


def test_value_comes_from_the_page(served):
    force_from_elsewhere()
    with client.open(page=served.page) as watcher:
        assert watcher.value() == 1
        force_from_elsewhere()
        assert watcher.value() == 2 == page_counter(served)


def test_value_without_a_page_reads_the_device(served, tmp_path):
    with client.open(page=str(tmp_path / "no-page")) as watcher:
        assert watcher.value() is None      # up to date, counter unseen
        force_from_elsewhere()
        assert watcher.value() == 1         # outdated: read says it
        assert watcher.wait(0) == 1
        assert watcher.ack()
        assert watcher.value() == 1         # what it acknowledged


def test_wait_returns_the_change_and_ack_drops_the_count(served):
    with client.open(page=served.page) as watcher:
        assert watcher.wait(0) is None
        force_from_elsewhere()
        assert watcher.wait(HANG) == 1
        assert watcher.wait(0) == 1         # not acknowledged yet
        assert outdated_now() == 1
        assert watcher.ack()
        assert outdated_now() == 0
        assert watcher.wait(0) is None
        assert not watcher.reopened


def test_ack_of_a_generation_that_changed_again_is_false(served):
    with client.open(page=served.page) as watcher:
        force_from_elsewhere()
        assert watcher.wait(HANG) == 1
        force_from_elsewhere()
        assert watcher.ack() is False
        assert watcher.wait(0) == 2
        assert watcher.ack() is True
        assert outdated_now() == 0


def test_fileno_with_selectors(served):
    with client.open(page=served.page) as watcher, \
            selectors.DefaultSelector() as selector:
        selector.register(watcher, selectors.EVENT_READ)
        assert selector.select(0) == []
        force_from_elsewhere()
        ready = selector.select(HANG)
        assert [key.fileobj for key, _ in ready] == [watcher]
        assert watcher.wait(0) == 1
        watcher.ack()
        assert selector.select(0) == []


def test_async_changes_yields_each_change_and_acks_after_the_body(served):
    async def follow(watcher) -> list:
        loop = asyncio.get_running_loop()
        seen = []
        forcing = []

        def force_in_a_thread():
            forcing.append(loop.run_in_executor(None, force_from_elsewhere))

        async for generation in watcher.async_changes():
            if forcing:
                # The forcer's own descriptor is outdated too until its
                # process has exited: count only once it has.
                await forcing[-1]
            seen.append((generation, outdated_now()))
            if len(seen) == 2:
                return seen
            # Runs once the iterator (ack, then add_reader) has suspended:
            # the next change comes while it waits in the loop.
            loop.call_soon(force_in_a_thread)

    with client.open(page=served.page) as watcher:
        force_from_elsewhere()
        seen = asyncio.run(asyncio.wait_for(follow(watcher), HANG))
        # Each change was seen outdated (the body runs before the ack).
        assert seen == [(1, 1), (2, 1)]
        assert watcher.pending == 2
        assert outdated_now() == 1


def test_wait_reopens_after_sigkill_and_reports_the_restart(served):
    """The client rule: the dead device is a change; the client retries
    the open until the daemon is back."""
    with client.open(page=served.page) as watcher:
        result = {}

        def wait():
            result["generation"] = watcher.wait()

        waiting = threading.Thread(target=wait)
        waiting.start()
        served.kill()
        assert served.wait_node_gone()
        served.start()          # --source none: the restart bumps to 1
        waiting.join(HANG)
        assert not waiting.is_alive()
        assert result == {"generation": 1}
        assert watcher.reopened and watcher.reopens == 1
        assert watcher.pending is None      # the new watcher is up to date
        assert outdated_now() == 0
        # The new watcher works: it sees the next change.
        force_from_elsewhere()
        assert watcher.wait(HANG) == 2
        assert watcher.ack()
        assert not watcher.reopened


def test_async_changes_reopen_after_sigkill(served):
    async def first_change(watcher):
        async for generation in watcher.async_changes():
            return generation, watcher.reopened

    with client.open(page=served.page) as watcher:
        served.kill()
        assert served.wait_node_gone()
        restarting = threading.Thread(target=served.start)
        restarting.start()
        seen = asyncio.run(asyncio.wait_for(first_change(watcher), HANG))
        restarting.join(HANG)
        assert seen == (1, True)


def test_inherited_descriptor_of_a_dead_daemon_raises_device_gone(served):
    fd = open_device()
    try:
        watcher = client.Watcher(page=served.page, fd=fd)
        served.kill()
        with pytest.raises(client.DeviceGone):
            watcher.wait(HANG)
        watcher.close()
        os.fstat(fd)            # still ours: an inherited fd is not closed
    finally:
        os.close(fd)


# -- the client rule per operation -----------------------------------------------

@pytest.mark.parametrize("mode", [os.O_RDONLY, os.O_WRONLY])
def test_a_descriptor_not_read_write_is_refused_not_taken_for_a_restart(
        served, mode):
    """A descriptor that is not O_RDWR gets EBADF from read or write on
    every call: that is the caller's mistake, never "the daemon went
    away" (which would reopen, or make `wait --fd` exit 6, forever)."""
    fd = os.open(NODE, mode | os.O_CLOEXEC)
    try:
        force_from_elsewhere()
        with pytest.raises(OSError) as raised:
            client.Watcher(page=served.page, fd=fd).wait(HANG)
        assert type(raised.value) is OSError
        assert raised.value.errno == errno.EBADF
        assert "O_RDWR" in str(raised.value)
        assert outdated(fd) == 1            # nothing acknowledged
    finally:
        os.close(fd)


# -- asyncio -----------------------------------------------------------------------

def test_async_wait_wakes_on_a_force_and_leaves_the_ack_to_ack(served):
    async def follow() -> tuple:
        loop = asyncio.get_running_loop()
        async with client.async_open(page=served.page) as watcher:
            waiting = asyncio.ensure_future(watcher.async_wait(HANG))
            await asyncio.sleep(0)          # it waits in the loop
            assert not waiting.done()
            # The forcer's own descriptor is outdated until it exits.
            await loop.run_in_executor(None, force_from_elsewhere)
            generation = await waiting
            outdated_before = outdated_now()
            assert watcher.ack()
            return generation, outdated_before, outdated_now(), \
                watcher.reopened

    assert asyncio.run(asyncio.wait_for(follow(), HANG)) == (1, 1, 0, False)


def test_async_wait_past_its_timeout_raises_timeout_error(served):
    async def wait_briefly(watcher):
        await watcher.async_wait(0.3)

    with client.open(page=served.page) as watcher:
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(wait_briefly(watcher), HANG))
        assert watcher.pending is None and not watcher.reopened
        # A change after the timeout is still there for the next wait.
        force_from_elsewhere()
        assert asyncio.run(watcher.async_wait(HANG)) == 1


def test_async_wait_reports_a_daemon_restart_as_a_change(served):
    with client.open(page=served.page) as watcher:
        served.kill()
        assert served.wait_node_gone()
        restarting = threading.Thread(target=served.start)
        restarting.start()
        generation = asyncio.run(asyncio.wait_for(watcher.async_wait(HANG),
                                                  HANG))
        restarting.join(HANG)
        assert (generation, watcher.reopened, watcher.reopens) == (1, True, 1)
        assert watcher.pending is None      # the new watcher is up to date
        force_from_elsewhere()
        assert asyncio.run(watcher.async_wait(HANG)) == 2
        assert watcher.ack() and not watcher.reopened
