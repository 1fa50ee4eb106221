# SPDX-License-Identifier: MIT
"""What a source says when hardware changes will not be seen: the one line
the log, the status file and `vmgenid status` show (docs/interface.rst,
"Where changes come from")."""

UNSEEN = "HARDWARE CHANGES WILL NOT BE SEEN (snapshot restores, clones)"


def unseen(why: str) -> str:
    return f"{UNSEEN}: {why}"
