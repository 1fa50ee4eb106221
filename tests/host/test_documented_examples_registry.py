# SPDX-License-Identifier: MIT
"""tests/examples.py names every literal block of the documents a user
copies from, once, and each test it says runs a block exists."""

import ast
import glob
import os
import shlex
import subprocess
import sys

import pytest

from tests.examples import DOCUMENTS, EXAMPLES, README_DEB
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


def commands(text: str) -> list:
    """The command lines of a shell block, without comments."""
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.split("#")[0].strip()]


@pytest.mark.parametrize("example", [e for e in EXAMPLES
                                     if e.why.startswith("build machine")
                                     or e is README_DEB],
                         ids=lambda e: f"{e.document}:{e.holding}")
def test_build_machine_commands_name_real_targets_and_options(example):
    """Not run here (they boot guests for many minutes), but each `make`
    target exists (make -n) and each bench/run.py line parses."""
    checked = 0
    for command in commands(example.text()):
        words = shlex.split(command)
        if words[0] == "make":
            run = [*words[:1], "-n", "-C", REPO, *words[1:]]
        elif words[:2] == [".venv/bin/python", "bench/run.py"]:
            run = [sys.executable, os.path.join(REPO, words[1]),
                   *words[2:], "--help"]
        else:
            continue        # the apt line: tests/system runs it
        done = subprocess.run(run, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (command, done.stdout + done.stderr)
        checked += 1
    assert checked, example
