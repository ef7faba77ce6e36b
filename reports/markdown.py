"""Text from a sweep (arm labels, override values, error texts) made safe to print in Markdown:
a table cell stays one cell, a heading one line, and nothing is read as HTML or code."""

from __future__ import annotations

import re

# Backslash first, so the escapes added after it are not escaped again.
_ESCAPES = (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("`", "\\`"))
_LINE_BREAKS = re.compile(r"[\r\n\v\f\u2028\u2029]+")


def md_text(text: object) -> str:
    """``text`` with backslashes, backticks, ``&``, ``<`` and ``>`` escaped (line breaks kept)."""
    out = str(text)
    for raw, escaped in _ESCAPES:
        out = out.replace(raw, escaped)
    return out


def md_line(text: object) -> str:
    """:func:`md_text` on one line: every run of line breaks becomes one space."""
    return _LINE_BREAKS.sub(" ", md_text(text)).strip()


def md_cell(text: object) -> str:
    """One Markdown table cell: :func:`md_line` with ``|`` escaped (GitHub's table rule)."""
    return md_line(text).replace("|", "\\|")
