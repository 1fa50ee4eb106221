# SPDX-License-Identifier: MIT
"""The examples a user copies out of the documents, taken as written.

A literal block of reStructuredText is the text indented under a paragraph
that ends with `::` (or a `.. code-block::` directive's body); other
directives (`.. list-table::`, `.. raw::`) are not examples.  snippet()
finds the one block of a document that holds a given line, so a test runs
exactly what the reader sees.  tests/examples.py says where each block
runs.

In a guest without the checkout's venv (the systemd guest of
tests/system), `python3 -m tests.snippets DOCUMENT HOLDING` prints that
block.
"""

import os
import re
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The --help of `vmgenid`, as a document of its own.
HELP = "vmgenid --help"
DIRECTIVE = re.compile(r"\s*\.\. ([\w-]+)::")
CODE_DIRECTIVES = {"code", "code-block", "sourcecode"}


def literal_blocks(text: str) -> list:
    """Every literal block of the text, dedented, without its trailing
    blank lines."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        directive = DIRECTIVE.match(line)
        if directive and directive.group(1) not in CODE_DIRECTIVES:
            continue
        # The paragraph's own indentation (a list item's text included).
        base = re.match(r"\s*(?:[-*+] )?", line).end()
        body = []
        for following in lines[i + 1:]:
            if following.strip() and \
                    len(following) - len(following.lstrip()) < base + 1:
                break
            body.append(following)
        block = textwrap.dedent("\n".join(body)).strip("\n")
        if directive:           # its options (":linenos:") come first
            block = re.sub(r"\A(?::[\w-]+:.*\n)+", "", block + "\n")
            block = block.strip("\n")
        if block:
            blocks.append(block + "\n")
    return blocks


def help_text(*command: str) -> str:
    """`vmgenid [COMMAND] --help` of the installed command (the venv's)."""
    tool = os.path.join(os.path.dirname(sys.executable), "vmgenid")
    return subprocess.run([tool, *command, "--help"], capture_output=True,
                          text=True, check=True).stdout


def help_blocks(epilog: str) -> list:
    """Every indented block of a --help text, dedented."""
    blocks, block = [], []
    for line in epilog.splitlines() + [""]:
        if line.startswith(" "):
            block.append(line)
        elif block:
            blocks.append(textwrap.dedent("\n".join(block)) + "\n")
            block = []
    return blocks


def blocks_of(document: str) -> list:
    """The literal blocks of @document: a path in the checkout, or HELP
    (the indented blocks of `vmgenid --help`'s epilog, after the
    options)."""
    if document == HELP:
        parts = help_text().split("\n\n")
        options = next(i for i, part in enumerate(parts)
                       if part.startswith("options:"))
        return help_blocks("\n\n".join(parts[options + 1:]))
    with open(os.path.join(REPO, document)) as f:
        return literal_blocks(f.read())


def holds(block: str, holding: str) -> bool:
    return any(line.strip().startswith(holding)
               for line in block.splitlines())


def snippet(document: str, holding: str) -> str:
    """The one literal block of document (a path in the checkout) with a
    line that starts with `holding` (leading blanks aside)."""
    found = [b for b in blocks_of(document) if holds(b, holding)]
    assert len(found) == 1, \
        f"{document}: {len(found)} literal blocks hold {holding!r}"
    return found[0]


def help_snippet(epilog: str, holding: str) -> str:
    """The one indented block of a --help epilog with a line that starts
    with `holding`, dedented."""
    found = [b for b in help_blocks(epilog) if holds(b, holding)]
    assert len(found) == 1, f"{len(found)} blocks of --help hold {holding!r}"
    return found[0]


if __name__ == "__main__":
    sys.stdout.write(snippet(*sys.argv[1:]))
