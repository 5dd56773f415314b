"""The one table printer of the benchmark scripts: Markdown for closing notes, or aligned plain text."""
from __future__ import annotations

from typing import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool, text_column: int) -> str:
    """Numbers right-aligned, the ``text_column`` (a row's name) left-aligned."""
    if markdown:
        rule = ["---" if i == text_column else "---:" for i in range(len(header))]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == text_column else v.rjust(w) for i, (v, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])
