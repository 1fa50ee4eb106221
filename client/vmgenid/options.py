# SPDX-License-Identifier: MIT
"""The ranges of the command-line values of `vmgenid`, each defined once
here, and what the commands (cuse-vmgenid, cuse-vmgenid-hooks and
vmgenid) parse them with: the daemon's and the hooks' own ranges are in
cuse_vmgenid.service.options, made with this Range.

Each is an argparse `type=`: a value outside its range ends the command at
parse time, before anything is opened, with exit status 2 and one line
(`prog: error: argument --x: ...`, see OneLineParser).  --help shows the
range (Range.span), and tests/host/test_manpages.py checks that the manual
pages and README state the same span.
"""

import argparse
import math
from dataclasses import dataclass
from typing import Union

Number = Union[int, float]

# poll(2) takes an int of milliseconds.
POLL_MAX_MS = 0x7FFFFFFF
ONE_DAY_S = 86400


@dataclass(frozen=True)
class Range:
    """A number from low to high (both included), from a string.

    integer: parsed with int(text, base), else with float() (finite only:
    inf and nan are refused).  what: the unit, for messages (e.g. "seconds").
    hexadecimal / octal: how the bounds are written in span."""
    low: Number
    high: Number
    what: str
    integer: bool = True
    base: int = 10
    octal: bool = False
    hexadecimal: bool = False

    def number(self, value: Number) -> str:
        if self.octal:
            return f"0{value:o}" if value else "0"
        if self.hexadecimal and value:
            return f"0x{value:x}"
        return str(value) if self.integer else f"{value:.15g}"

    @property
    def span(self) -> str:
        """The range as the help and the manual pages write it."""
        return f"{self.number(self.low)} to {self.number(self.high)}"

    def __call__(self, text: str) -> Number:
        try:
            value = int(text, self.base) if self.integer else float(text)
        except ValueError:
            value = None
        if value is None or (not self.integer and not math.isfinite(value)) \
                or not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {self.what} from {self.span}")
        return value


def path(text: str) -> str:
    """A path a command cannot do without (the daemon's --page, --state;
    the hooks' --hooks-dir; the tool's --device, --status-file): '' is
    refused.  The daemon's optional ones (--status, --page-link,
    --vmclock-link) take '' for none."""
    if not text:
        raise argparse.ArgumentTypeError("'' is not a path (this one "
                                         "cannot be none)")
    return text


# -- vmgenid ----------------------------------------------------------------

# wait --timeout: one poll(2) call, whose timeout is an int of ms; 0 looks
# once (with --fd: is the watcher outdated?).
WAIT_TIMEOUT = Range(0, POLL_MAX_MS // 1000, "a number of seconds",
                     integer=False)
# A generation as the ioctls take it (a u32; the daemon refuses one above
# its counter's maximum with EOVERFLOW).
GENERATION = Range(0, 0xFFFFFFFF, "a generation", base=0, hexadecimal=True)
# A file descriptor (an int).
DESCRIPTOR = Range(0, 0x7FFFFFFF, "a descriptor")


class OneLineParser(argparse.ArgumentParser):
    """argparse's error as one line, without the usage before it (a
    journal or a script's log gets the line that says what is wrong)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} "
                     "--help)\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        # Python 3.11's argparse takes an option's value "--" (--device=--)
        # for the end of the options and leaves [] there, unconverted.
        for action in self._actions:
            if action.nargs is None and action.option_strings and \
                    getattr(parsed, action.dest, None) == []:
                self.error(f"argument {action.option_strings[0]}: '--' "
                           "is not a value it takes")
        return parsed, extras


def with_span(help_text: str, values: Range) -> str:
    """help_text with the range after it, for --help."""
    return f"{help_text}; {values.span}"
