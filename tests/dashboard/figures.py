"""Reading a dashboard's figures back: each is ``data-k="<name>" data-value="<exact>"``."""

from __future__ import annotations

import re

_FIGURE = re.compile(r'data-k="([^"]+)" data-value="([^"]*)"')


def figures(html: str) -> dict[str, str]:
    return dict(_FIGURE.findall(html))
