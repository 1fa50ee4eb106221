# SPDX-License-Identifier: MIT
"""journal.py: the "<N>" syslog priority on each line for journald, only
when JOURNAL_STREAM names the stream itself."""

import logging
import os
import sys

from hypothesis import given, strategies as st

from cuse_vmgenid.service.journal import PriorityFormatter, is_journal, priority
from vmgenid.printable import printable


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("cuse_vmgenid", level, __file__, 1, message,
                             None, None)


def test_priorities_of_the_named_levels():
    assert [priority(level) for level in (
        logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO,
        logging.DEBUG)] == [2, 3, 4, 6, 7]


@given(st.integers(0, 60), st.integers(0, 60))
def test_a_higher_level_never_gets_a_lower_priority(a, b):
    low, high = sorted((a, b))
    assert priority(high) <= priority(low)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=5),
       st.sampled_from([logging.ERROR, logging.WARNING, logging.INFO]))
def test_a_message_is_one_line_with_its_priority_escaped(parts, level):
    """A newline in a message (a hook's output, a process name) cannot
    make a line of its own: the message is escaped whole."""
    message = "\n".join(parts)
    text = PriorityFormatter("%(message)s").format(record(level, message))
    assert text == f"<{priority(level)}>" + printable(message)
    assert "\n" not in text


def test_every_line_of_a_traceback_carries_its_priority():
    try:
        raise ValueError("bad\x1b]2;title\x07")
    except ValueError:
        failed = logging.LogRecord("cuse_vmgenid", logging.ERROR, __file__,
                                   1, "failed", None, sys.exc_info())
    lines = PriorityFormatter("%(message)s").format(failed).split("\n")
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: bad\\x1b]2;title\\x07"


def test_only_the_stream_journal_stream_names_is_the_journal(
        tmp_path, monkeypatch):
    with open(tmp_path / "stream", "w") as named, \
            open(tmp_path / "other", "w") as other:
        st_named = os.fstat(named.fileno())
        monkeypatch.setenv("JOURNAL_STREAM",
                           f"{st_named.st_dev}:{st_named.st_ino}")
        assert is_journal(named)
        assert not is_journal(other)
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not is_journal(named)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not is_journal(named)
