# SPDX-License-Identifier: MIT
"""The daemon's log lines, escaped as everything shown is
(vmgenid.printable: the rule, and why)."""

import logging

from vmgenid.printable import printable, printable_lines


class Formatter(logging.Formatter):
    """The daemon's log lines: each record's message escaped whole (a
    newline in it too, so no text can forge a line of its own), a
    traceback line by line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return printable_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return printable_lines(super().formatStack(stack_info))
