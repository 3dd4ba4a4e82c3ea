"""Where the CLI's tables are printed: a terminal's width on a terminal, and no width limit
when piped, so that a hotkey or an id reaches a script or a file whole (rich would fold or
cut them to 80 columns)."""

from __future__ import annotations

from rich.console import Console

PIPED_WIDTH = 100_000  # wider than any row: columns keep their content's width


def table_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH)
