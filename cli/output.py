"""Rendering of command results: aligned text tables, key/value records, and JSON.

Every inspection command ends in :func:`emit_table` or :func:`emit_record`; with ``--json`` the
raw server documents are printed instead, so scripts see exactly what the API returned.
Tables fit the terminal width (80 columns when stdout is not a terminal): the columns marked
``wide`` (commands, paths, messages) shrink first and lose their tail to an ellipsis.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

ELLIPSIS = "…"
GAP = "  "
#: A column never shrinks below this many characters (header permitting).
MIN_WIDTH = 6


@dataclass(frozen=True)
class Column:
    """One table column: ``header`` and ``field``, a dotted path into the document (``_key``,
    ``resources.num_cpus``) or a function of the document. ``wide`` columns give up their width
    first when the table does not fit."""

    header: str
    field: str | Callable[[Mapping[str, Any]], Any]
    wide: bool = False

    def value(self, doc: Mapping[str, Any]) -> str:
        if callable(self.field):
            return format_value(self.field(doc))
        value: Any = doc
        for part in self.field.split("."):
            if not isinstance(value, Mapping):
                value = None
                break
            value = value.get(part)
        return format_value(value)


def format_value(value: Any) -> str:
    """One cell: None is empty, bools are lower-case like JSON, containers are compact JSON,
    and line breaks become spaces so that a row stays one line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), sort_keys=False)
    else:
        text = str(value)
    return " ".join(text.split()) if ("\n" in text or "\t" in text or "\r" in text) else text


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded for display (``0.25000000001`` minutes → ``0.25``); others as is."""
    return round(value, digits) if isinstance(value, float) else value


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last one an ellipsis if anything was cut.

    The cut falls between words when a space lies in the last third of the room (so that
    messages do not end mid-word); a single long word is cut where the room ends.
    """
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    room = text[: width - 1]
    space = room.rfind(" ")
    if space >= (2 * len(room)) // 3 and text[width - 1] != " ":
        room = room[:space]
    return room.rstrip() + ELLIPSIS


def terminal_width() -> int:
    """The terminal's width, 80 when stdout is not a terminal (pipes, tests)."""
    return shutil.get_terminal_size((80, 24)).columns


def fit_widths(natural: Sequence[int], headers: Sequence[str], wide: Sequence[bool],
               total: int) -> list[int]:
    """Column widths that fit ``total`` characters including the gaps.

    Wide columns shrink first (the widest first), then every other column, never below
    ``max(MIN_WIDTH, len(header))`` unless even that does not fit, in which case the table
    simply overflows: a truncated header helps nobody.
    """
    widths = list(natural)
    budget = total - len(GAP) * (len(widths) - 1)
    floors = [min(w, max(MIN_WIDTH, len(h))) for w, h in zip(widths, headers)]
    for shrinkable in ([i for i, w in enumerate(wide) if w], list(range(len(widths)))):
        excess = sum(widths) - budget
        while excess > 0:
            candidates = [i for i in shrinkable if widths[i] > floors[i]]
            if not candidates:
                break
            # Take from the widest column, down to the next widest at most, so that several
            # wide columns end up sharing the space evenly.
            candidates.sort(key=lambda j: widths[j], reverse=True)
            i = candidates[0]
            runner_up = widths[candidates[1]] if len(candidates) > 1 else floors[i]
            step = max(1, min(excess, widths[i] - max(runner_up, floors[i])))
            widths[i] -= step
            excess -= step
    return widths


def render_table(docs: Iterable[Mapping[str, Any]], columns: Sequence[Column],
                 width: int | None = None) -> str:
    """The documents as an aligned text table with a header line, fitted to ``width``."""
    headers = [c.header for c in columns]
    rows = [[c.value(doc) for c in columns] for doc in docs]
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    widths = fit_widths(natural, headers, [c.wide for c in columns],
                        terminal_width() if width is None else width)
    lines = []
    for cells in [headers] + rows:
        parts = [truncate(cell, w).ljust(w) for cell, w in zip(cells, widths)]
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines)


def render_record(doc: Mapping[str, Any], fields: Sequence[str] | None = None,
                  indent: str = "") -> str:
    """One document as aligned ``field: value`` lines; a nested object's fields follow on
    indented lines (deeper levels as compact JSON), so that wide configs stay readable."""
    names = list(fields) if fields is not None else list(doc)
    if not names:
        return ""
    pad = max(len(n) for n in names) + 1
    lines = []
    for name in names:
        value = doc.get(name)
        if isinstance(value, Mapping) and value and not indent:
            lines.append(f"{indent}{name}:")
            lines.append(render_record(value, indent=indent + "  "))
        else:
            lines.append(f"{indent}{(name + ':').ljust(pad)} {format_value(value)}".rstrip())
    return "\n".join(lines)


def to_json(data: Any) -> str:
    """Pretty JSON, keys in the server's order."""
    return json.dumps(data, indent=2)


def emit_json(data: Any) -> None:
    click.echo(to_json(data))


def emit_table(docs: Sequence[Mapping[str, Any]], columns: Sequence[Column], as_json: bool,
               empty: str = "No items.") -> None:
    """Print documents as a table, or as a JSON array with ``--json``."""
    if as_json:
        emit_json(list(docs))
    elif not docs:
        click.echo(empty)
    else:
        click.echo(render_table(docs, columns))


def section(title: str) -> str:
    """A section heading inside a multi-part text report (``workflows show``, ``jobs show``)."""
    return f"\n{title}\n{'-' * len(title)}"
