"""File names made safe to print on one line: what the CLI writes to stdout and stderr (and
counts of things as people write them, :func:`count`).

A file name may hold a newline, a tab or other control characters, or (on Linux) bytes that are
not UTF-8. Printed as they are, they break ``path<TAB>caption`` lines or raise
``UnicodeEncodeError`` on stdout. :func:`printable` escapes them the way Python writes them in a
string (``\\n``, ``\\t``, ``\\x1b``, and ``\\xff`` for a byte that is not UTF-8), and leaves every
other character, accents and scripts included, as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str | Path) -> str:
    """``text`` with control characters and undecodable bytes escaped (backslashes are left alone:
    Windows paths are full of them).

    Only a name that needs it changes: ``café.jpg`` stays ``café.jpg``, ``a\\nb.jpg`` (with a real
    newline) becomes ``a\\\\nb.jpg`` (a backslash and an ``n``).
    """
    text = str(text)
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def count(n: int, noun: str) -> str:
    """``"1 photo"``, ``"2 photos"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def literal(text: str) -> str:
    """``text`` as a button's or a menu command's text, shown as it is: Qt takes a single ``&`` for
    the mark of an Alt+letter shortcut ("R&D" shown "RD", and Alt+D taken), so it is doubled."""
    return text.replace("&", "&&")
