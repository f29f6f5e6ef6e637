"""Text from files shown on a page as text: never as Markdown, HTML, a link or an image.

Streamlit renders ``st.markdown``, ``st.caption``, ``st.info``, ``st.warning``, ``st.error`` and
``st.success`` as Markdown, so a file named ``![x](http://host/x).png`` inside a notice would make
every viewer's browser fetch that address, and ``:red[...]`` or ``$...$`` would restyle the page.
:func:`plain` puts a backslash (CommonMark's escape, shown as nothing) before every character
that can start Markdown, HTML or a Streamlit directive: brackets (links, images, ``:color[...]``),
``<`` and ``>`` (tags, autolinks, quotes), emphasis and code marks, ``$`` (LaTeX), ``#`` and ``|``
(headings, tables), ``:`` (directives), ``&`` (entities) and the backslash; line breaks
become spaces, and a word joiner (U+2060, invisible) follows ``http:``, ``www`` and ``@`` so
that bare addresses are not turned into links. The reader sees exactly the characters of the
name. Use it on any string that carries a file, folder, archive entry, model or class name into
one of those calls.
"""

from __future__ import annotations

import re

_AUTOLINK = re.compile(r"(?i)(\b(?:https?|ftp|mailto|file):|\bwww(?=\.)|@)")
_SPECIAL = re.compile(r"([\\\[\]<>*_`~$#|:&])")


def plain(text: object) -> str:
    """``text`` with Markdown, HTML and Streamlit directives made inert; it reads the same."""
    flat = re.sub(r"[\r\n]+", " ", str(text))  # no new line, so nothing starts a list or heading
    # GFM turns bare addresses into links after escapes are resolved; an invisible word joiner
    # after "http:", "www" and "@" keeps them text.
    flat = _AUTOLINK.sub("\\1\u2060", flat)
    return _SPECIAL.sub(r"\\\1", flat)
