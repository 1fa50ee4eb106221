# SPDX-License-Identifier: MIT
"""printable.py: what reaches a terminal or the log holds nothing a
terminal acts on, and the escaping is unambiguous (issue 20, item 7)."""

import re

from hypothesis import given, strategies as st

from vmgenid.printable import printable

ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unescape(shown: str) -> str:
    """printable()'s inverse, from its documented rules alone: \\xNN
    below 0x80 is that character, above it that byte (not UTF-8)."""
    def one(m):
        code = m.group(1)
        if code == "\\":
            return "\\"
        value = int(code[1:], 16)
        if code[0] == "x" and value >= 0x80:
            return chr(0xDC00 + value)
        return chr(value)
    return ESCAPE.sub(one, shown)


# Text as procinfo.comm() and a hook's output give it: any bytes,
# decoded with surrogateescape; and any characters (JSON can carry them).
texts = st.one_of(
    st.binary(max_size=40).map(lambda b: b.decode(errors="surrogateescape")),
    st.text(max_size=40))


@given(texts)
def test_nothing_a_terminal_acts_on(text):
    shown = printable(text)
    assert shown.isprintable()
    assert all(not 0x80 <= ord(c) < 0xA0 for c in shown)


@given(texts)
def test_the_escaping_is_unambiguous(text):
    assert unescape(printable(text)) == text


def test_the_examples_of_the_docs():
    assert printable("\x1b[8m\x1b]2;PWN\x07") == "\\x1b[8m\\x1b]2;PWN\\x07"
    assert printable("a\\x41\nb") == "a\\\\x41\\x0ab"
    assert printable(b"\x9b".decode(errors="surrogateescape")) == "\\x9b"
    assert printable("\x9b") == "\\u009b"
    assert printable("\u202e") == "\\u202e"
    assert printable("обновлятель 😀") == "обновлятель 😀"
