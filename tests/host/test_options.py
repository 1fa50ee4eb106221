# SPDX-License-Identifier: MIT
"""Every value of a ranged option of both commands (options.py), whatever
its text: it parses into its range, or the command exits 2 with one line
(argparse's error), never a traceback; and the daemon's poll timeout takes
whatever a deadline may be."""

import argparse
import contextlib
import io
import math
import os
import select

import pytest
from hypothesis import example, given, strategies as st

from cuse_vmgenid import safefiles
from cuse_vmgenid.service import options
from cuse_vmgenid.service import cli, daemon
from cuse_vmgenid.service import hooks
from vmgenid import options as client_options, tool
from tests.host.test_manpages import daemon_parser, hooks_parser, subcommands

UINT_MAX = 0xFFFFFFFF
INT_MAX = 0x7FFFFFFF


def ranged(parser: argparse.ArgumentParser, before=()) -> list:
    """(argv before the value, the action) of each option of parser whose
    type is a Range, or options.devname."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in subcommands(parser).items():
                found += ranged(sub, (*before, name))
        elif isinstance(action.type, client_options.Range) or \
                action.type is options.devname:
            found.append((before, action))
    return found


# What a subcommand cannot parse without.
REQUIRED = {"ack": ["--fd", "3"], "watch": ["--exec", "true"]}


def argv_for(before, action, text: str) -> list:
    """argv with text as the value of action, and what it requires."""
    required = [] if not before else REQUIRED.get(before[0], [])
    if not action.option_strings:          # ack's GENERATION
        return [*before, *required, "--", text]
    if required[:1] == action.option_strings[:1]:
        required = []
    return [*before, *required, f"{action.option_strings[0]}={text}"]


DAEMON = ranged(daemon_parser())
HOOKS = ranged(hooks_parser())
TOOL = ranged(tool.parser())


def parse(parse_args, argv):
    """(namespace, None) or (None, (exit code, stderr))."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parse_args(argv), None
    except SystemExit as e:
        return None, (e.code, err.getvalue())


def check(parse_args, prog, before, action, text: str) -> None:
    parsed, failed = parse(parse_args, argv_for(before, action, text))
    if failed is not None:
        code, stderr = failed
        prog = " ".join((prog, *before[:1]))
        assert code == 2
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert lines[0].startswith(f"{prog}: error: argument "), stderr
        return
    value = getattr(parsed, action.dest)
    if action.type is options.devname:
        assert 1 <= len(value) <= options.DEVNAME_MAX
        assert value.isascii() and value.isprintable()
        assert value not in (".", "..") and not set(value) & set("/!\\ ")
        node = os.path.join("/dev", value)
        assert os.path.dirname(os.path.normpath(node)) == "/dev"
        return
    values = action.type
    assert values.low <= value <= values.high
    assert isinstance(value, int) if values.integer \
        else math.isfinite(value)


NUMBER_TEXTS = st.one_of(
    st.floats().map(repr), st.floats().map(str),
    st.integers().map(str), st.integers().map(hex),
    st.integers().map(oct),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e308", "1e309", "-0",
                     "1e-400", "0x7fffffff", "0x80000000", "99999999999999"
                     "999999", " 5 ", "1_000", "", "٣", "0777", "1777"]),
    st.text(max_size=20))


@pytest.mark.parametrize("before,action", DAEMON,
                         ids=[a.dest for _, a in DAEMON])
@given(text=NUMBER_TEXTS | st.text(max_size=300))
@example(text="inf")
def test_daemon_value_parses_into_its_range_or_exits_2(before, action,
                                                       text):
    check(cli.parse_args, "cuse-vmgenid", before, action, text)


@pytest.mark.parametrize("before,action", HOOKS,
                         ids=[a.dest for _, a in HOOKS])
@given(text=NUMBER_TEXTS)
@example(text="inf")
@example(text="nan")
@example(text="0")
def test_hooks_value_parses_into_its_range_or_exits_2(before, action, text):
    check(hooks.parse_args, "cuse-vmgenid-hooks", before, action, text)


@pytest.mark.parametrize("before,action", TOOL,
                         ids=[" ".join((*b, a.dest)) for b, a in TOOL])
@given(text=NUMBER_TEXTS)
@example(text="1e300")
def test_vmgenid_value_parses_into_its_range_or_exits_2(before, action,
                                                        text):
    check(tool.parser().parse_args, "vmgenid", before, action, text)


def test_every_number_option_has_a_range():
    """No int or float left as a bare type: each has its range here."""
    bare = [a.option_strings for p in (daemon_parser(), hooks_parser(),
                                       *subcommands(tool.parser()).values())
            for a in p._actions
        if a.type in (int, float)]
    assert bare == []


def test_the_ranges_fit_the_code_that_uses_them():
    # C unsigned ints: the poll thread's interval, the per-uid cap.
    assert options.POLL_INTERVAL_MS.high <= UINT_MAX
    assert options.MAX_WATCHERS_PER_UID.high <= UINT_MAX
    # wait --timeout: one poll(2), an int of ms (client.Watcher._poll).
    assert int(client_options.WAIT_TIMEOUT.high * 1000) <= INT_MAX
    select.poll().poll(int(client_options.WAIT_TIMEOUT.low * 1000))
    # --fd: an int.
    assert client_options.DESCRIPTOR.high <= INT_MAX
    # The hook timeout fits select(2) (hooks.run_hook).
    select.select([], [], [], options.HOOK_TIMEOUT.low)
    assert options.HOOK_TIMEOUT.high * 1000 <= INT_MAX


DEADLINES = st.lists(st.none() | st.floats(), max_size=4)


@given(deadlines=DEADLINES, now=st.floats(allow_nan=False,
                                          allow_infinity=False))
@example(deadlines=[float("inf")], now=0.0)
@example(deadlines=[1e308], now=0.0)
@example(deadlines=[float("nan")], now=0.0)
def test_poll_timeout_takes_any_deadline(deadlines, now):
    ms = daemon.poll_timeout_ms(deadlines, now)
    assert isinstance(ms, int) and -1 <= ms <= daemon.MAX_POLL_MS
    assert (ms == -1) == all(d is None for d in deadlines)


def path_options(parser: argparse.ArgumentParser, before=()) -> list:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in subcommands(parser).items():
                found += path_options(sub, (name,))
        elif action.type in (client_options.path, options.daemon_file):
            found.append((before, action))
    return found


PATHS = [(cli.parse_args, "cuse-vmgenid", b, a)
         for b, a in path_options(daemon_parser())] + \
        [(hooks.parse_args, "cuse-vmgenid-hooks", b, a)
         for b, a in path_options(hooks_parser())] + \
        [(tool.parser().parse_args, "vmgenid", b, a)
         for b, a in path_options(tool.parser())]


@pytest.mark.parametrize("parse_args,prog,before,action", PATHS,
                         ids=[" ".join((*b, a.dest)) for _, _, b, a in PATHS])
@given(text=st.text(max_size=30))
@example(text="")
def test_a_path_that_cannot_be_none_is_never_empty(parse_args, prog, before,
                                                   action, text):
    parsed, failed = parse(parse_args, argv_for(before, action, text))
    if text == "--" and failed is not None:
        # Python 3.11's argparse reads it as the end of the options
        # (OneLineParser refuses it in one line); later ones take it.
        assert failed[0] == 2 and len(failed[1].splitlines()) == 1, failed
    elif text:
        assert failed is None and getattr(parsed, action.dest) == text
    else:
        assert failed is not None and failed[0] == 2
        assert len(failed[1].splitlines()) == 1, failed[1]


@pytest.mark.parametrize("option", ["--page", "--state"])
@given(name=st.text(st.characters(blacklist_characters="/\0"), min_size=1,
                    max_size=20))
def test_a_daemon_file_named_like_a_temporary_file_is_refused(option, name):
    """A start removes unlocked files shaped like the state file's
    temporary files (statefile.remove_leftovers): none of the daemon's own
    files may have such a name."""
    temporary = safefiles.unique_name(f"/run/vmgenid/{name}")
    parsed, failed = parse(cli.parse_args, [option, temporary])
    assert failed is not None and failed[0] == 2, parsed
    assert len(failed[1].splitlines()) == 1 and "temporary" in failed[1]
    if not safefiles.is_some_unique_name(name):
        assert parse(cli.parse_args,
                     [option, f"/run/vmgenid/{name}"])[1] is None


@pytest.mark.parametrize("option,value", [("--hooks-dir", "/etc/x"),
                                          ("--hook-timeout", "5")])
def test_a_hook_option_kept_from_before_the_runner_is_logged_as_ignored(
        option, value):
    """An /etc/default/cuse-vmgenid kept across the upgrade: the daemon
    still starts, and says which option now belongs to cuse-vmgenid-hooks."""
    lines = cli.moved_options(cli.parse_args([option, value]))
    assert lines == [f"{option} is ignored: hooks.d runs in "
                     "cuse-vmgenid-hooks now (cuse-vmgenid-hooks.service; "
                     "its options go in CUSE_VMGENID_HOOKS_OPTS)"]
    assert cli.moved_options(cli.parse_args([])) == []
    assert option not in daemon_parser().format_help()
