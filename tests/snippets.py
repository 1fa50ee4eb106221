# SPDX-License-Identifier: MIT
"""The examples a user copies out of the documents, taken as written.

A literal block of reStructuredText is the text indented under a paragraph
that ends with `::`.  snippet() finds the one block of a document that
holds a given line, so a test runs exactly what the reader sees.
"""

import os
import re
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def literal_blocks(text: str) -> list:
    """Every literal block of the text, dedented, without its trailing
    blank lines."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
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
        if block:
            blocks.append(block + "\n")
    return blocks


def snippet(document: str, holding: str) -> str:
    """The one literal block of document (a path in the checkout) with a
    line that starts with `holding` (leading blanks aside)."""
    with open(os.path.join(REPO, document)) as f:
        blocks = literal_blocks(f.read())
    found = [b for b in blocks
             if any(line.strip().startswith(holding)
                    for line in b.splitlines())]
    assert len(found) == 1, \
        f"{document}: {len(found)} literal blocks hold {holding!r}"
    return found[0]


def help_snippet(epilog: str, holding: str) -> str:
    """The one indented block of a --help epilog with a line that starts
    with `holding`, dedented."""
    blocks, block = [], []
    for line in epilog.splitlines() + [""]:
        if line.startswith(" "):
            block.append(line)
        elif block:
            blocks.append(textwrap.dedent("\n".join(block)) + "\n")
            block = []
    found = [b for b in blocks
             if any(line.strip().startswith(holding)
                    for line in b.splitlines())]
    assert len(found) == 1, f"{len(found)} blocks of --help hold {holding!r}"
    return found[0]
