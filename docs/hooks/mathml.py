"""MkDocs hooks: turn the TeX that ``pymdownx.arithmatex`` marks into MathML when the site is built, and
drop the Sphinx roles (``:meth:``, ``:class:``, ...) that docstrings put before a name.

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


_ROLE = re.compile(r":(?:meth|class|func|mod|data|attr|exc|obj):<code>(~(?:[\w.]+\.)?)?")


def on_page_content(html_text: str, **kwargs: Any) -> str:
    """Replace every math span and block of a page by its MathML; show ``:meth:`x.y``` as ``x.y``, and
    ``:class:`~a.b.C``` as ``C`` (as Sphinx does)."""
    html_text = _ROLE.sub("<code>", html_text)
    return _MATH.sub(_to_mathml, html_text)
