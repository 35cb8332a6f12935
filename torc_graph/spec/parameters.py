"""Parameter values and templates of current torc specs (spec format §4.2-§4.5).

A parameter value is a string: a list (``"[1, 2.5, x]"``), a range (``"1:100"``,
``"10:1:-3"``, ``"0.0:1.0:0.25"``) or a scalar. :func:`parse_values` turns it into Python
values (int, float, str) exactly as torc v0.10 does; :func:`display` prints one as Rust's
``Display`` would. A :class:`Template` is a string with ``{name}`` / ``{name:SPEC}``
placeholders, compiled once and rendered per combination with pre-formatted values, so
expanding 10^6 combinations costs one string join per templated field.

Fixes relative to torc (spec format [REC]s): every occurrence of ``{x}`` and ``{x:SPEC}``
is substituted in one left-to-right pass (torc keeps a second form literal); products run in
declaration order, first parameter outermost (torc: hash-map order).

Raises ValueError with a plain message; the caller prefixes the entry and field.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

Value = int | float | str

_I64 = re.compile(r"[+-]?[0-9]+\Z")
_F64 = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
                  re.IGNORECASE)
_ZERO_PAD = re.compile(r"0([0-9]+)d\Z")
_DECIMALS = re.compile(r"\.([0-9]+)f\Z")
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1
#: A range longer than this is refused (a typo such as "1:1e12" would exhaust memory).
MAX_VALUES = 10_000_000
#: One job or file expands into at most this many copies (a 10^6-job sweep is the design point;
#: a product of two long lists would otherwise exhaust the server's memory).
MAX_COPIES = 2_000_000


def _int(text: str) -> int | None:
    if _I64.match(text):
        v = int(text)
        if _I64_MIN <= v <= _I64_MAX:
            return v
    return None


def _float(text: str) -> float | None:
    return float(text) if _F64.match(text) else None


def scalar(text: str) -> Value:
    """One value: an i64, else an f64 (Rust syntax: ``1e3``, ``.5``, ``inf``, no ``_``), else
    the string itself."""
    v = _int(text)
    if v is not None:
        return v
    f = _float(text)
    return f if f is not None else text


def parse_values(raw: str) -> list[Value]:
    """The values of one parameter string (spec format §4.2). Raises ValueError for a
    malformed range (wrong number of parts, non-numeric bounds or step, step 0)."""
    text = raw.strip()
    if text.startswith("{") and text.endswith("}") and "," not in text:
        text = text[1:-1].strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text.lstrip("[").rstrip("]").strip()
        if not inner:
            return []
        out: list[Value] = []
        for item in inner.split(","):
            item = item.strip()
            v = scalar(item)
            out.append(v.strip("'").strip('"') if isinstance(v, str) else v)
        return out
    if ":" in text:
        return _range(text)
    return [scalar(text)]


def _range(text: str) -> list[Value]:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (2, 3):
        raise ValueError(f"range {text!r} must be START:END or START:END:STEP")
    step_text = parts[2] if len(parts) == 3 and parts[2] else None
    start, end = _int(parts[0]), _int(parts[1])
    if start is not None and end is not None:
        step = 1 if step_text is None else _int(step_text)
        if step is None:
            raise ValueError(f"range {text!r}: the step of an integer range must be an integer")
        if step == 0:
            raise ValueError(f"range {text!r}: step must not be 0")
        values = range(start, end + (1 if step > 0 else -1), step)
        if len(values) > MAX_VALUES:
            raise ValueError(f"range {text!r} has more than {MAX_VALUES:,} values")
        return list(values)
    fstart, fend = _float(parts[0]), _float(parts[1])
    if fstart is None or fend is None:
        raise ValueError(f"range {text!r}: start and end must be numbers")
    fstep = 1.0 if step_text is None else _float(step_text)
    if fstep is None or fstep == 0 or not math.isfinite(fstep):
        raise ValueError(f"range {text!r}: step must be a non-zero number")
    if not (math.isfinite(fstart) and math.isfinite(fend)):
        raise ValueError(f"range {text!r}: start and end must be finite")
    if (fend - fstart) / fstep > MAX_VALUES:
        raise ValueError(f"range {text!r} has more than {MAX_VALUES:,} values")
    values: list[Value] = []
    v = fstart
    if fstep > 0:
        while v <= fend + 1e-10:
            values.append(v)
            v += fstep
    else:
        while v >= fend - 1e-10:
            values.append(v)
            v += fstep
    return values


def display(value: Value) -> str:
    """``{x}`` with no spec: ints in decimal, strings as they are, floats as Rust's Display
    (shortest round-trip, never an exponent, no trailing ``.0``; ``NaN``, ``inf``)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        s = repr(value)
        if "e" in s:
            s = format(Decimal(s), "f")
        return s[:-2] if s.endswith(".0") else s
    return str(value)


def formatted(value: Value, spec: str | None) -> str:
    """``{x:SPEC}``: ``0Nd`` zero-pads an int, ``.Nf`` rounds a float; any other spec (or a
    spec on another type) prints the plain value (spec format §4.4)."""
    if spec is not None:
        if isinstance(value, int) and (m := _ZERO_PAD.match(spec)):
            return format(value, f"0{m.group(1)}d")
        if isinstance(value, float) and (m := _DECIMALS.match(spec)):
            return format(value, f".{m.group(1)}f")
    return display(value)


class Template:
    """A string with ``{name}`` / ``{name:SPEC}`` placeholders for the given parameter names.

    Compiled once: ``parts`` alternates literal text and (name, spec) slots. Braces that name
    no parameter stay as typed; values are never rescanned.
    """

    __slots__ = ("parts", "constant")

    def __init__(self, text: str, names: Sequence[str]):
        self.parts: list[str | tuple[str, str | None]] = []
        if names:
            pattern = re.compile(r"\{(" + "|".join(map(re.escape, names)) + r")(?::([^}]*))?\}")
            pos = 0
            for m in pattern.finditer(text):
                self.parts.append(text[pos:m.start()])
                self.parts.append((m.group(1), m.group(2)))
                pos = m.end()
            self.parts.append(text[pos:])
        self.constant = text if len(self.parts) <= 1 else None

    def slots(self) -> Iterator[tuple[str, str | None]]:
        """The (name, spec) placeholders used."""
        return (p for p in self.parts if isinstance(p, tuple))

    def render(self, combo: Mapping[str, int], table: Mapping[tuple[str, str | None], list[str]]) -> str:
        """The string for one combination: ``combo`` maps a name to its value index, ``table``
        maps (name, spec) to every value already formatted."""
        if self.constant is not None:
            return self.constant
        return "".join([p if p.__class__ is str else table[p][combo[p[0]]] for p in self.parts])

    def renderer(self, table: Mapping[tuple[str, str | None], list[str]]
                 ) -> Callable[[Mapping[str, int]], str]:
        """:meth:`render` bound to ``table``, specialized for the common one-placeholder case
        (one concatenation per combination)."""
        if len(self.parts) == 3:
            pre, (name, spec), post = self.parts
            values = table[(name, spec)]
            return lambda combo: pre + values[combo[name]] + post
        return lambda combo: self.render(combo, table)


def combinations(values: Mapping[str, Sequence[Value]], zip_mode: bool) -> Iterator[dict[str, int]]:
    """Index combinations: the Cartesian product in declaration order (first parameter
    outermost), or element-wise with ``zip_mode``. An empty list gives no combination in
    product mode. Raises ValueError if zip lists differ in length."""
    names = list(values)
    if count(values, zip_mode) > MAX_COPIES:
        raise ValueError(f"expands to more than {MAX_COPIES:,} copies")
    if zip_mode:
        lengths = {n: len(v) for n, v in values.items()}
        if len(set(lengths.values())) > 1:
            first = names[0]
            other = next(n for n in names if lengths[n] != lengths[first])
            raise ValueError(
                "all parameters must have the same number of values in zip mode: "
                f"{first!r} has {lengths[first]}, {other!r} has {lengths[other]}")
        n = lengths[names[0]] if names else 1
        return ({name: i for name in names} for i in range(n))
    ranges = [range(len(values[n])) for n in names]
    return (dict(zip(names, idx)) for idx in itertools.product(*ranges))


def count(values: Mapping[str, Sequence[Value]], zip_mode: bool) -> int:
    """How many combinations :func:`combinations` gives (zip: the first list's length)."""
    if zip_mode:
        return len(next(iter(values.values()))) if values else 1
    return math.prod(len(v) for v in values.values())


def format_table(values: Mapping[str, Sequence[Value]],
                 templates: Sequence[Template]) -> dict[tuple[str, str | None], list[str]]:
    """Every (name, spec) slot used by ``templates``, with each value formatted once."""
    table: dict[tuple[str, str | None], list[str]] = {}
    for t in templates:
        for slot in t.slots():
            if slot not in table:
                name, spec = slot
                table[slot] = [formatted(v, spec) for v in values[name]]
    return table
