# SPDX-License-Identifier: MIT
"""The shell loop is one text in README, vmgenid(1) and `vmgenid --help`
(tests/guest/test_documented_examples.py runs README's), and the blocks
the guest tests take out of the documents are the ones a reader sees."""

import os
import re

import pytest

from tests.examples import DOCUMENTS
from tests.snippets import REPO, help_snippet, help_text, literal_blocks, \
    snippet
from vmgenid import tool

LOOP_START = "open_vmgenid() {"


@pytest.mark.parametrize("command", [[], ["wait"], ["ack"]])
def test_the_shell_loop_is_the_same_in_readme_the_man_page_and_help(
        command, capsys):
    readme = snippet("README.rst", LOOP_START)
    assert snippet("docs/vmgenid.1.rst", LOOP_START) == readme
    with pytest.raises(SystemExit):
        tool.main([*command, "--help"])
    assert help_snippet(capsys.readouterr().out, LOOP_START) == readme


def test_the_shell_loop_handles_every_exit_of_wait_and_ack():
    """wait --fd: 0 reseeds, 6 (the daemon went away) reopens and
    reseeds, anything else ends the loop; ack: 5 and 6 are left to the
    next wait."""
    loop = snippet("README.rst", LOOP_START)
    assert f"{tool.EXIT_REOPEN})" in loop
    assert f"0|{tool.EXIT_CHANGED_AGAIN}|{tool.EXIT_REOPEN})" in loop
    assert "until open_vmgenid; do sleep 1; done" in loop
    # `<>` opens with O_CREAT: with the node away (no daemon, a restart)
    # root's script would make a plain file /dev/vmgenid, and no daemon
    # could start until someone removed it.  `<` never creates.
    assert "<>/dev/vmgenid" not in loop.replace('"3<>/dev/vmgenid"', "")
    assert "command exec 3</dev/vmgenid &&" in loop


@pytest.mark.parametrize("document", DOCUMENTS + ["vmgenid ack --help"])
def test_no_document_opens_the_node_in_a_way_that_creates_it(document):
    """`exec N<>/dev/vmgenid` is the loop's "never": O_CREAT, so as root
    while the node is away it makes a plain file where the daemon's node
    belongs.  A descriptor is made read-write through /proc/self/fd."""
    if document.startswith("vmgenid "):      # HELP, or a command's
        text = help_text(*document.split()[1:-1])
    else:
        with open(os.path.join(REPO, document)) as f:
            text = f.read()
    text = text.replace('never "3<>/dev/vmgenid"', "")
    assert not re.search(r"<>(\*\*)?/dev/vmgenid", text), document


@pytest.mark.parametrize("text, blocks", [
    ("Text::\n\n    a\n      b\n\n    c\nafter\n", ["a\n  b\n\nc\n"]),
    ("- item::\n\n      x\n\n  more\n", ["x\n"]),
    ("no block here\n\n    quoted\n", []),
    ("two::\n\n  one\n\n::\n\n  two\n", ["one\n", "two\n"]),
])
def test_literal_blocks_are_the_indented_text_after_double_colon(text,
                                                                  blocks):
    assert literal_blocks(text) == blocks
