"""MkDocs hook: turn the TeX that ``pymdownx.arithmatex`` marks into MathML when the site is built.

Browsers render MathML themselves, so the pages need no JavaScript and no network to show the
equations. ``arithmatex`` (``generic: true``) wraps inline math in ``<span class="arithmatex">\\(...\\)</span>``
and display math in ``<div class="arithmatex">\\[...\\]</div>``; each becomes a ``<math>`` element.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

_MATH = re.compile(r'<(span|div) class="arithmatex">\s*\\([\(\[])(.*?)\\[\)\]]\s*</\1>', re.DOTALL)


def _to_mathml(match: re.Match[str]) -> str:
    display = "block" if match.group(2) == "[" else "inline"
    return convert(html.unescape(match.group(3)).strip(), display=display)


def on_page_content(html_text: str, **kwargs: Any) -> str:
    """Replace every math span and block of a page by its MathML."""
    return _MATH.sub(_to_mathml, html_text)
