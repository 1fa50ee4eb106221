# SPDX-License-Identifier: MIT
"""tests/examples.py names every literal block of the documents a user
copies from, once, and each test it says runs a block exists."""

import ast
import glob
import os

import pytest

from tests.examples import DOCUMENTS, EXAMPLES
from tests.snippets import REPO, blocks_of, holds


def test_every_document_a_user_reads_is_searched():
    documents = {os.path.relpath(path, REPO) for path in
                 glob.glob(os.path.join(REPO, "docs", "*.rst"))}
    assert documents | {"README.rst"} <= set(DOCUMENTS)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_block_is_named_once(document):
    named = [e for e in EXAMPLES if e.document == document]
    unclaimed, twice = [], []
    for block in blocks_of(document):
        claims = [e.holding for e in named if holds(block, e.holding)]
        if not claims:
            unclaimed.append(block)
        elif len(claims) > 1:
            twice.append((claims, block))
    assert not unclaimed, f"{document}: no entry of tests/examples.py " \
        f"says where these run: {unclaimed}"
    assert not twice, f"{document}: named more than once: {twice}"


@pytest.mark.parametrize("example", EXAMPLES,
                         ids=lambda e: f"{e.document}:{e.holding}")
def test_every_entry_names_one_block_and_who_runs_it(example):
    example.text()              # one block holds the line, no more
    assert bool(example.runs) != bool(example.why), example


def defined(path: str) -> set:
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("where", sorted({w for e in EXAMPLES
                                          for w in e.runs}))
def test_every_test_named_exists(where):
    path, _, name = where.partition("::")
    assert os.path.isfile(os.path.join(REPO, path)), f"no {path}"
    if name:
        assert name.startswith("test_") and name in defined(path), \
            f"{path} has no {name}"
