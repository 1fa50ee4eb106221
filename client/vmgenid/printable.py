# SPDX-License-Identifier: MIT
r"""Text from others, made safe for a terminal and for the log.

A process name, a hook's name or output, a path: any user can put any
bytes there (prctl PR_SET_NAME, the name of a file it runs), escape
sequences too, which a terminal would obey (hide the rest of the output,
set the window title, ...).  Like ps, everything shown passes through
here first; unlike ps, which prints "?", the escaping is unambiguous, so
the name can be told exactly (docs/interface.rst, "Privacy").  The
`vmgenid` tool prints through here, and the daemon's log lines pass
through here too (cuse_vmgenid.service.printable):

- a backslash is shown as ``\\``;
- a byte that is not UTF-8 (text decoded with surrogateescape, as
  vmgenid.procinfo.comm() does) as ``\xNN``;
- a character that is not printable (str.isprintable(): controls, DEL,
  C1 controls, format characters such as U+202E) as ``\xNN`` below
  U+0080, else ``\uNNNN`` or ``\UNNNNNNNN``;
- every other character as itself.

So ``\x9b`` is the byte 0x9b, ``\u009b`` the character U+009B.  Only
what is printed is escaped: the status files are JSON, which escapes
controls itself (a byte that is not UTF-8 is there U+DC80 + the byte,
surrogateescape's convention).
"""

_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)


def _escaped(char: str) -> str:
    code = ord(char)
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """text with every backslash, undecodable byte and non-printable
    character escaped: one line, nothing a terminal would act on."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join("\\\\" if c == "\\" else c if c.isprintable()
                   else _escaped(c) for c in text)


def printable_lines(text: str) -> str:
    """Each line of text made printable, the line breaks kept (a
    traceback)."""
    return "\n".join(printable(line) for line in text.split("\n"))
