# SPDX-License-Identifier: MIT
"""The manual pages (docs/*.rst, built by rst2man in the package) name
every option, choice and subcommand the two commands' parsers accept, so
an option added to the code without its page fails here; they, and
README's options paragraph, state each option's range as options.py
defines it."""

import argparse
import re
from unittest import mock

import docutils.core
import docutils.nodes
import pytest

from cuse_vmgenid.service import options
from cuse_vmgenid.service import cli
from cuse_vmgenid.service import hooks
from vmgenid import options as client_options, tool
from tests.harness.cache import REPO_ROOT


def page(name: str) -> str:
    return (REPO_ROOT / "docs" / f"{name}.rst").read_text()


def daemon_parser() -> argparse.ArgumentParser:
    """The parser cli.parse_args builds (it parses at once)."""
    return built_parser(cli.parse_args)


def hooks_parser() -> argparse.ArgumentParser:
    """The parser hooks.parse_args builds."""
    return built_parser(hooks.parse_args)


def built_parser(parse_args) -> argparse.ArgumentParser:
    """The parser parse_args builds (it parses at once)."""
    built = []

    class Built(Exception):
        pass

    def keep(self, args=None, namespace=None):
        built.append(self)
        raise Built
    with mock.patch.object(argparse.ArgumentParser, "parse_args", keep):
        with pytest.raises(Built):
            parse_args([])
    return built[0]


def named(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string and choice of @parser, as the page sets them
    (bold)."""
    words = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        words += action.option_strings
        if action.choices:
            words += [str(choice) for choice in action.choices]
    return [f"**{word}**" for word in words]


def subcommands(parser: argparse.ArgumentParser) -> dict:
    [sub] = [a for a in parser._actions
             if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_cuse_vmgenid_8_names_every_option_and_choice():
    text = page("cuse-vmgenid.8")
    missing = [word for word in named(daemon_parser()) if word not in text]
    assert missing == []


def test_cuse_vmgenid_hooks_8_names_every_option_and_choice():
    text = page("cuse-vmgenid-hooks.8")
    missing = [word for word in named(hooks_parser()) if word not in text]
    assert missing == []


def section(text: str, title: str, underline: str) -> str:
    head = f"\n{title}\n{underline * len(title)}\n"
    if head not in text:
        return ""
    return text.split(head, 1)[1].split(f"\n{underline * 3}", 1)[0]


def test_vmgenid_1_has_a_section_per_subcommand_naming_its_options():
    text = page("vmgenid.1")
    parser = tool.parser()
    # The options every subcommand shares: under OPTIONS, once.
    common = section(text, "OPTIONS", "=")
    missing = [word for word in named(parser) if word not in common]
    for name, sub in subcommands(parser).items():
        own = section(text, name, "-")
        if not own:
            missing.append(f"section {name}")
        missing += [f"{name} {word}" for word in named(sub)
                    if word not in own and word not in common]
    assert missing == []


@pytest.mark.parametrize("name", ["cuse-vmgenid.8", "cuse-vmgenid-hooks.8",
                                  "vmgenid.1"])
def test_each_page_has_the_sections_a_manual_page_needs(name):
    text = page(name)
    wanted = ["SYNOPSIS", "DESCRIPTION", "FILES", "EXIT STATUS", "SEE ALSO"]
    wanted += ["SIGNALS"] if name.endswith(".8") else ["ENVIRONMENT"]
    assert [s for s in wanted if f"\n{s}\n{'=' * len(s)}\n" not in text] \
        == []


def exit_status_codes(name: str) -> list[int]:
    """The codes of a page's EXIT STATUS section, in order."""
    section = page(name).split("EXIT STATUS\n", 1)[1].split("\n\n", 1)[1]
    section = section.split("\nSEE ALSO\n", 1)[0]
    return [int(line.strip("*")) for line in section.splitlines()
            if line.startswith("**") and line.strip("*").isdigit()]


def test_vmgenid_1_exit_status_is_the_tools_codes():
    """Every exit code tool.py defines is in the page and its --help, and
    the page lists no other (values, not only names)."""
    codes = sorted({value for name, value in vars(tool).items()
                    if name.startswith("EXIT_")})
    assert exit_status_codes("vmgenid.1") == codes
    for code in codes:
        assert f"\n  {code}  " in tool.EPILOG, code


# -- the ranges (cuse_vmgenid/service/options.py, vmgenid/options.py) --------------

def flat(text: str) -> str:
    """text with its line breaks and indentation as single spaces."""
    return " ".join(text.split())


def paragraph(text: str, option: str) -> str:
    """The description under the entry of option (`**--x** *X*` at the
    start of a line) in text, up to the next entry or section."""
    head = f"\n**{option}**"
    if head not in text:
        return ""
    body = text.split(head, 1)[1]
    ends = [body.find(mark) for mark in ("\n\n**", "\n\n*", "\n---", "\n===")]
    return flat(body[:min([e for e in ends if e >= 0] or [len(body)])])


def range_text(action: argparse.Action) -> str:
    """How a page states the values action takes."""
    if action.type is options.devname:
        return f"1 to {options.DEVNAME_MAX} characters"
    return action.type.span


def ranged_actions(parser: argparse.ArgumentParser) -> list:
    return [a for a in parser._actions
            if isinstance(a.type, client_options.Range)
            or a.type is options.devname]


@pytest.mark.parametrize("name,parser", [("cuse-vmgenid.8", daemon_parser),
                                         ("cuse-vmgenid-hooks.8",
                                          hooks_parser)])
def test_cuse_vmgenid_8_states_each_option_s_range(name, parser):
    text = page(name)
    wrong = {a.option_strings[0]: range_text(a)
             for a in ranged_actions(parser())
             if range_text(a) not in paragraph(text, a.option_strings[0])}
    assert wrong == {}


def test_vmgenid_1_states_each_option_s_range_in_its_command_s_section():
    text = page("vmgenid.1")
    wrong = {}
    for name, sub in subcommands(tool.parser()).items():
        own = section(text, name, "-")
        for action in ranged_actions(sub):
            where = paragraph(own, action.option_strings[0]) \
                if action.option_strings else flat(own)
            if range_text(action) not in where:
                wrong[name, action.dest] = range_text(action)
    assert wrong == {}


def test_readme_options_paragraph_states_each_daemon_range():
    readme = (REPO_ROOT / "README.rst").read_text()
    start = readme.index("\nOptions: ``--devname``")
    listed = flat(readme[start:readme.index("\n\n", start)])
    wrong = {}
    for action in ranged_actions(daemon_parser()):
        option = action.option_strings[0]
        after = listed.split(f"``{option}``", 1)[-1].split("``--", 1)[0] \
            if f"``{option}``" in listed else ""
        if range_text(action) not in after:
            wrong[option] = range_text(action)
    assert wrong == {}


# -- vmgenid(4) against the header and docs/interface.rst ---------------------

HEADER = REPO_ROOT / "native" / "include" / "linux" / "vmgenid.h"
OTHER_REQUEST = "any other request"


def header_ioctls() -> list[str]:
    return re.findall(r"^#define\s+(VMGENID_[A-Z_]+)\s+_IO",
                      HEADER.read_text(), re.M)


def test_vmgenid_4_names_every_ioctl_of_the_header():
    text = page("vmgenid.4")
    assert header_ioctls()
    missing = [name for name in header_ioctls()
               if f"\n**{name}**\n" not in section(text, "Ioctls", "-")]
    assert missing == []


def page_errors() -> dict:
    """vmgenid(4)'s ERRORS: {call: {errno, ...}}, a call being `open`,
    `read`, `write`, an ioctl's name or OTHER_REQUEST."""
    errors, call = {}, None
    for line in section(page("vmgenid.4"), "ERRORS", "=").splitlines():
        if line and not line[0].isspace():
            head = re.match(r"\*\*(\w+)\*\*(\\ \(\))?$", line)
            if line != OTHER_REQUEST and not head:
                continue            # the section's opening sentence
            call = head[1] if head else line
            errors[call] = set()
        elif re.match(r"^ {3}\*\*E[A-Z]+\*\*$", line):
            errors[call].add(line.strip("* "))
    return errors


def contract_errors() -> dict:
    """docs/interface.rst's errno table read by value: for each errno, the
    calls its "from" cell names (``read``, ``write``, ``open``, an ioctl,
    "the three ioctls that change the generation", "an unknown ioctl").
    The last row (the daemon went away) is the client rule, not an
    answer."""
    doctree = docutils.core.publish_doctree(
        (REPO_ROOT / "docs" / "interface.rst").read_text())
    [table] = [t for t in doctree.findall(docutils.nodes.table)
               if next(t.findall(docutils.nodes.entry)).astext() == "errno"]
    changing = ["VMGENID_FORCE_GEN_UPDATE", "VMGENID_NOTIFY",
                "VMGENID_FORCE_GEN_UPDATE_MIN"]
    errors = {call: set() for call in
              ["open", "read", "write", *header_ioctls(), OTHER_REQUEST]}
    rows = list(table.findall(docutils.nodes.row))[1:]
    assert "any other" in " ".join(rows[-1].astext().split())
    for row in rows[:-1]:
        errno_cell, source_cell = list(row.findall(docutils.nodes.entry))[:2]
        errno = errno_cell.astext()
        source = " ".join(source_cell.astext().split())
        calls = {lit.astext() for lit in source_cell.findall(
            docutils.nodes.literal)
            if lit.astext() in ("open", "read", "write")
            or lit.astext().startswith("VMGENID_")}
        if "three ioctls that change the generation" in source:
            calls |= set(changing)
        if "unknown ioctl" in source:
            calls.add(OTHER_REQUEST)
        assert calls, errno
        for call in calls:
            errors[call].add(errno)
    return errors


def test_vmgenid_4_errors_per_call_are_the_contract_s():
    contract = contract_errors()
    assert contract["read"] >= {"EAGAIN", "EINTR", "EINVAL", "EBADF"}
    assert page_errors() == contract


@pytest.mark.parametrize("name", sorted(
    p.name[:-len(".rst")] for p in (REPO_ROOT / "docs").glob("*.[0-9].rst")))
def test_manual_page_builds_with_rst2man_strict(name):
    """What debian/rules runs (rst2man --strict: a warning stops it)."""
    assert name in (REPO_ROOT / "debian" / "rules").read_text()
    out = docutils.core.publish_string(
        page(name), writer="manpage",
        settings_overrides={"halt_level": 2, "report_level": 2})
    assert b".TH " in out
