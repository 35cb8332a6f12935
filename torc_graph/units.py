"""Strict parsers for torc's memory strings and durations (behavior doc §1.8).

Durations are ISO 8601 (``P0DT1H``) or the short form people type (``10m``, ``2h``, ``1d``,
``1h30m``, ``1.5h``): :func:`duration_seconds` is the one parser every runtime goes through
(resource requirements, worker time limits, the CLI).

torc v0.6.4 parsed both leniently and wrongly: memory regexes were not anchored (``"1.5g"``
became 5 GiB), and durations ignored weeks and the sign and were not end-anchored (``P0DT1m``
became 0 seconds). These parsers are anchored at both ends and compute what the text says;
anything else is :class:`~torc_graph.errors.InvalidInput` naming the value.

Lowercase designators: the real client's CLI default ``--runtime-per-job P0DT1m``
(``torc workflows create-from-commands-file`` / ``create-from-json-file``, torc/cli/workflows.py)
is sent to the server as a resource-requirements ``runtime``. Rejecting it would break that
command, so designators are accepted case-insensitively, each with its uppercase meaning
(``P0DT1m`` = one minute, ``M`` after ``T`` is minutes).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from torc_graph.errors import InvalidInput

KiB = 1024
GiB = 1024**3

_MEMORY_UNITS = {"k": KiB, "m": KiB**2, "g": KiB**3, "t": KiB**4}
_MEMORY = re.compile(r"(\d+(?:\.\d+)?|\.\d+) *([kmgtKMGT])[bB]?", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)

_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(
    rf"(?P<sign>-)?[Pp]"
    rf"(?:{_NUM}[Yy])?(?:{_NUM}[Mm])?(?:{_NUM}[Ww])?(?:{_NUM}[Dd])?"
    rf"(?:(?P<t>[Tt])(?:{_NUM}[Hh])?(?:{_NUM}[Mm])?(?:{_NUM}[Ss])?)?",
    re.ASCII,
)
_SECONDS_PER = (None, None, 7 * 86400, 86400, 3600, 60, 1)  # Y, M, W, D, H, M, S
#: The short form: one or more <number><unit>, units w d h m s (any case; m is minutes).
_SHORT = re.compile(r"(?:\d+(?:\.\d+)?|\.\d+) *[wdhmsWDHMS](?: *(?:\d+(?:\.\d+)?|\.\d+) *[wdhmsWDHMS])*",
                    re.ASCII)
_SHORT_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+) *([wdhmsWDHMS])", re.ASCII)
_SHORT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}

#: Bounds that keep parsed values storable: bytes fit a 64-bit integer (SQLite, ArangoDB) and
#: seconds stay far inside a float; longer number texts are refused before any arithmetic.
MAX_BYTES = 2**63 - 1
MAX_SECONDS = 2**53
_MAX_NUMBER_TEXT = 100


def _clip(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def memory_bytes(text: str) -> int:
    """Bytes in a memory string: all digits = bytes (``"1048576"``), else a number and a unit
    ``k|m|g|t`` (powers of 1024, case-insensitive), optionally separated by spaces and followed by
    ``b``/``B``: ``"10g"``, ``"1.5 GB"``, ``"512m"``. Fractional bytes are truncated.

    Raises InvalidInput for anything else (e.g. ``"10"`` with junk, ``"g"``, ``"1.5.2g"``, ``""``)
    and for values over :data:`MAX_BYTES` or texts over 100 characters.
    """
    if type(text) is not str:
        raise InvalidInput(f"invalid memory value {text!r}: expected a string such as '10g'")
    digits = _DIGITS.fullmatch(text) is not None
    m = None if digits else _MEMORY.fullmatch(text)
    if not digits and m is None:
        raise InvalidInput(
            f"invalid memory value {text!r}: expected bytes or <number><k|m|g|t>, e.g. '10g'"
        )
    if len(text) > _MAX_NUMBER_TEXT:
        raise InvalidInput(f"memory value {_clip(text)} is too long")
    n = int(text) if m is None else int(Fraction(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()])
    if n > MAX_BYTES:
        raise InvalidInput(f"memory value {_clip(text)} is too large (over {MAX_BYTES} bytes)")
    return n


def duration_seconds(text: str) -> float:
    """Seconds in a duration: ISO 8601 ``[-]P[nW][nD][T[nH][nM][nS]]`` or the short form
    ``<n><unit>...`` with units ``w d h m s`` (``10m`` = 600, ``2h`` = 7200, ``1d`` = 86400,
    ``1h30m`` = 5400, ``1.5h`` = 5400; spaces between parts allowed; ``m`` is minutes).

    ISO: numbers may have decimals, a week is 7 days, a leading ``-`` negates. Designators are
    case-insensitive (see the module docstring). Examples: ``P0DT1H`` = 3600,
    ``PT23H59M59.5S`` = 86399.5, ``-PT3S`` = -3, ``P1W`` = 604800.

    Raises InvalidInput for years or months (their length in seconds is undefined), for a
    string without any component (``P``, ``PT``, ``P1DT``, ``""``), for more than
    :data:`MAX_SECONDS` seconds or texts over 100 characters, and for anything else.
    """
    if type(text) is not str:
        raise InvalidInput(f"invalid duration {text!r}: expected e.g. '10m', '2h' or ISO-8601 "
                           "'P0DT1H'")
    if _SHORT.fullmatch(text):
        return _short_seconds(text)
    m = _DURATION.fullmatch(text)
    numbers = m.groups()[1:5] + m.groups()[6:] if m else ()
    if (
        m is None
        or all(n is None for n in numbers)
        or (m.group("t") and all(n is None for n in numbers[4:]))
    ):
        raise InvalidInput(
            f"invalid duration {text!r}: expected <number><w|d|h|m|s>..., e.g. '10m', '2h', "
            "'1h30m', or ISO-8601 [-]P[nW][nD][T[nH][nM][nS]], e.g. 'P0DT1H'"
        )
    if numbers[0] is not None or numbers[1] is not None:
        raise InvalidInput(
            f"invalid duration {text!r}: years and months are not supported; use weeks or days"
        )
    if len(text) > _MAX_NUMBER_TEXT:
        raise InvalidInput(f"duration {_clip(text)} is too long")
    total = Fraction(0)
    for value, factor in zip(numbers, _SECONDS_PER):
        if value is not None:
            total += Fraction(value) * factor
    if total > MAX_SECONDS:
        raise InvalidInput(f"duration {_clip(text)} is too large (over {MAX_SECONDS} seconds)")
    return float(-total if m.group("sign") else total)


def _short_seconds(text: str) -> float:
    if len(text) > _MAX_NUMBER_TEXT:
        raise InvalidInput(f"duration {_clip(text)} is too long")
    total = sum((Fraction(n) * _SHORT_SECONDS[u.lower()] for n, u in _SHORT_PART.findall(text)),
                Fraction(0))
    if total > MAX_SECONDS:
        raise InvalidInput(f"duration {_clip(text)} is too large (over {MAX_SECONDS} seconds)")
    return float(total)


def is_iso_duration(text: str) -> bool:
    """True if ``text`` is written in ISO 8601 (whether or not it is valid)."""
    return text.lstrip("-")[:1] in ("P", "p")


def seconds_to_duration(seconds: float) -> str:
    """Format seconds as an ISO-8601 duration that :func:`duration_seconds` and the client's
    ``isodate.parse_duration`` both read back: 3600 → ``PT1H``, 176400 → ``P2DT1H``,
    86399.5 → ``PT23H59M59.5S``, 0 → ``PT0S``, -3 → ``-PT3S``. Rounded to microseconds.

    Raises InvalidInput for NaN or infinity.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise InvalidInput(f"cannot express {seconds!r} seconds as a duration")
    micro = round(Fraction(seconds) * 1_000_000)
    sign = "-" if micro < 0 else ""
    micro = abs(micro)
    days, micro = divmod(micro, 86400 * 1_000_000)
    hours, micro = divmod(micro, 3600 * 1_000_000)
    minutes, micro = divmod(micro, 60 * 1_000_000)
    whole, frac = divmod(micro, 1_000_000)
    date = f"{days}D" if days else ""
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if whole or frac:
        time += f"{whole}.{frac:06d}".rstrip("0") + "S" if frac else f"{whole}S"
    if not date and not time:
        time = "0S"
    return f"{sign}P{date}" + (f"T{time}" if time else "")


def bytes_to_gib(n: int | float) -> float:
    """Bytes → GiB (2**30 bytes), as used by ``memory_gb`` in worker resources."""
    return n / GiB
