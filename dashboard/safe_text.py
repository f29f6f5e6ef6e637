"""Text from files shown on a page as text: never as Markdown, HTML, a link or an image.

Streamlit renders ``st.markdown``, ``st.caption``, ``st.info``, ``st.warning``, ``st.error`` and
``st.success`` as Markdown, so a file named ``![x](http://host/x).png`` inside a notice would make
every viewer's browser fetch that address, and ``:red[...]`` or ``$...$`` would restyle the page.
:func:`plain` puts a backslash (CommonMark's escape, shown as nothing) before every character
that can start Markdown, HTML or a Streamlit directive: brackets (links, images, ``:color[...]``),
``<`` and ``>`` (tags, autolinks, quotes), emphasis and code marks, ``$`` (LaTeX), ``#`` and ``|``
(headings, tables), ``:`` (directives, ``http:`` autolinks), ``&`` (entities) and the backslash; line breaks
become spaces. The reader sees exactly the characters of the name. Use it on any string that
carries a file, folder, archive entry, model or class name into one of those calls.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\\[\]<>*_`~$#|:&])")


def plain(text: object) -> str:
    """``text`` with Markdown, HTML and Streamlit directives made inert; it reads the same."""
    flat = re.sub(r"[\r\n]+", " ", str(text))  # no new line, so nothing starts a list or heading
    return _SPECIAL.sub(r"\\\1", flat)
