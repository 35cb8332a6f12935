"""torc_graph.units: strict memory and ISO-8601 duration parsing (behavior doc §1.8)."""

from __future__ import annotations

import math

import isodate
import pytest

from torc_graph import units
from torc_graph.errors import InvalidInput

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize("text,expected", [
    ("0", 0),
    ("1048576", 1048576),
    ("1m", MiB),  # the resource_requirements default
    ("1k", KiB),
    ("1K", KiB),
    ("10g", 10 * GiB),
    ("10G", 10 * GiB),
    ("30g", 30 * GiB),
    ("2t", 2 * TiB),
    ("512m", 512 * MiB),
    ("10 g", 10 * GiB),
    ("10  g", 10 * GiB),
    ("10gb", 10 * GiB),  # original: 10 GiB by accident (unanchored); now on purpose
    ("10GB", 10 * GiB),
    ("10 GB", 10 * GiB),
    ("4kB", 4 * KiB),
    ("1.5g", GiB + GiB // 2),  # original: 5 GiB [BUG]
    ("0.5k", 512),
    (".5k", 512),
    ("1.1k", 1126),  # fractional bytes are truncated
    ("007g", 7 * GiB),
])
def test_memory_bytes(text, expected):
    assert units.memory_bytes(text) == expected
    assert isinstance(units.memory_bytes(text), int)


@pytest.mark.parametrize("text", [
    "", " ", "g", "gb", "b", "10x", "10gg", "10 gbb", "x10g", "abc10g", "10g junk", "1.5.2g",
    "1.g", "-1g", "+1g", "1e3", "1e3g", " 10g", "10g ", "10\tg", "10\ng", "10 ", "1,5g",
    "10p", "10mib", "١٠g", "٣", "10b", "0x10",
])
def test_memory_bytes_rejects(text):
    # Everything here is garbage the original accepted (unanchored search) or that is not a
    # memory string at all.
    with pytest.raises(InvalidInput) as info:
        units.memory_bytes(text)
    assert repr(text) in info.value.message
    assert info.value.status == 400


@pytest.mark.parametrize("value", [None, 10, 1.5, b"10g", ["10g"]])
def test_memory_bytes_rejects_non_strings(value):
    with pytest.raises(InvalidInput):
        units.memory_bytes(value)


@pytest.mark.parametrize("text,expected", [
    ("P0DT1H", 3600),  # behavior doc examples
    ("P0DT1M", 60),
    ("PT23H59M59.5S", 86399.5),
    ("P2DT1H", 176400),
    ("PT4.9S", 4.9),  # what the client's pydantic time_limit produces
    ("P9DT23H59M59.1S", 863999.1),
    ("-PT3S", -3),  # sign honored (original ignored it [BUG])
    ("-P1DT1S", -86401),
    ("P1W", 604800),  # weeks honored (original ignored them [BUG])
    ("P1W1D", 691200),
    ("P1D", 86400),
    ("PT0S", 0),
    ("P0D", 0),
    ("PT1M30S", 90),
    ("PT90M", 5400),
    ("P1.5D", 129600),
    ("PT0.25H", 900),
    ("P0DT1m", 60),  # the real client's CLI default --runtime-per-job: lowercase = uppercase
    ("p0dt1h", 3600),
    ("pt1h30m", 5400),
    ("P1w", 604800),
])
def test_duration_seconds(text, expected):
    assert units.duration_seconds(text) == pytest.approx(expected, abs=1e-9)
    assert isinstance(units.duration_seconds(text), float)


@pytest.mark.parametrize("text,why", [
    ("P1Y", "years and months"),
    ("P1M", "years and months"),  # M before T is months
    ("P1Y2M3D", "years and months"),
    ("P1m", "years and months"),
    ("", "ISO-8601"),
    ("P", "ISO-8601"),
    ("PT", "ISO-8601"),
    ("P1DT", "ISO-8601"),
    ("-P", "ISO-8601"),
    ("1", "ISO-8601"),
    ("-10m", "ISO-8601"),
    ("10 mins", "ISO-8601"),
    ("1hh", "ISO-8601"),
    ("h1", "ISO-8601"),
    ("10y", "ISO-8601"),
    ("1.h", "ISO-8601"),
    ("T1H", "ISO-8601"),
    ("PT1H ", "ISO-8601"),  # not end-anchored in the original
    (" PT1H", "ISO-8601"),
    ("PT1Hjunk", "ISO-8601"),
    ("PT1H1H", "ISO-8601"),
    ("PT1S1M", "ISO-8601"),  # wrong order
    ("P1DT1W", "ISO-8601"),
    ("PT-1S", "ISO-8601"),
    ("+PT1S", "ISO-8601"),
    ("PT1.S", "ISO-8601"),
    ("PT.5S", "ISO-8601"),
    ("PT1,5S", "ISO-8601"),
    ("PT1e3S", "ISO-8601"),
    ("P٣D", "ISO-8601"),
    ("04:00:00", "ISO-8601"),
    ("3600", "ISO-8601"),
])
def test_duration_seconds_rejects(text, why):
    with pytest.raises(InvalidInput) as info:
        units.duration_seconds(text)
    assert repr(text) in info.value.message
    assert why in info.value.message


@pytest.mark.parametrize("value", [None, 3600, 1.5, b"PT1H"])
def test_duration_seconds_rejects_non_strings(value):
    with pytest.raises(InvalidInput):
        units.duration_seconds(value)


@pytest.mark.parametrize("seconds,text", [
    (3600, "PT1H"),
    (60, "PT1M"),
    (176400, "P2DT1H"),
    (86399.5, "PT23H59M59.5S"),
    (0, "PT0S"),
    (0.0, "PT0S"),
    (-3, "-PT3S"),
    (4.9, "PT4.9S"),
    (863999.1, "P9DT23H59M59.1S"),
    (86400, "P1D"),
    (90061.000001, "P1DT1H1M1.000001S"),
    (1e-7, "PT0S"),  # below a microsecond
    (59.9999999, "PT1M"),  # rounding carries into minutes
])
def test_seconds_to_duration(seconds, text):
    assert units.seconds_to_duration(seconds) == text


@pytest.mark.parametrize("seconds", [
    0, 1, 59, 60, 61, 3599.999, 3600, 86399.5, 86400, 604800, 1e6 + 0.25, 12345.678901, -3, -90061.5,
])
def test_seconds_to_duration_round_trips_through_isodate_and_units(seconds):
    text = units.seconds_to_duration(seconds)
    assert isodate.parse_duration(text).total_seconds() == pytest.approx(seconds, abs=1e-6)
    assert units.duration_seconds(text) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "60", None, True])
def test_seconds_to_duration_rejects(value):
    with pytest.raises(InvalidInput):
        units.seconds_to_duration(value)


def test_bytes_to_gib():
    assert units.bytes_to_gib(GiB) == 1.0
    assert units.bytes_to_gib(0) == 0.0
    assert units.bytes_to_gib(units.memory_bytes("1.5g")) == 1.5
    assert units.bytes_to_gib(MiB) == pytest.approx(1 / 1024)


@pytest.mark.parametrize("text, fragment", [
    ("9" * 400 + "g", "too long"),  # Fraction arithmetic on it was an OverflowError path
    ("9" * 5000, "too long"),  # int() refuses over 4300 digits (ValueError)
    ("9" * 30 + "g", "too large"),
    ("9223372036854775808", "too large"),
])
def test_memory_bytes_rejects_values_beyond_64_bits(text, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        units.memory_bytes(text)


def test_memory_bytes_accepts_the_64_bit_maximum():
    assert units.memory_bytes(str(units.MAX_BYTES)) == units.MAX_BYTES
    assert units.memory_bytes("8388607t") == 8388607 * 1024**4


@pytest.mark.parametrize("text, fragment", [
    ("P" + "9" * 400 + "D", "too long"),  # float() of it was an OverflowError
    ("P99999999999999999999W", "too large"),
    ("-P99999999999999999999W", "too large"),
])
def test_duration_seconds_rejects_huge_durations(text, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        units.duration_seconds(text)


@pytest.mark.parametrize("text, expected", [
    ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("90s", 90),
    ("1h30m", 5400), ("1h 30m", 5400), ("1.5h", 5400), (".5m", 30), ("1H", 3600),
    ("2D3H", 2 * 86400 + 3 * 3600), ("0s", 0), ("1d2h3m4s", 93784),
])
def test_short_durations(text, expected):
    assert units.duration_seconds(text) == expected
    assert not units.is_iso_duration(text)
    # what the server emits for them parses back (isodate: the torc client)
    iso = units.seconds_to_duration(units.duration_seconds(text))
    assert isodate.parse_duration(iso).total_seconds() == expected


@pytest.mark.parametrize("text, fragment", [
    ("9" * 200 + "h", "too long"),
    ("99999999999999999999w", "too large"),
])
def test_short_durations_too_long_or_large(text, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        units.duration_seconds(text)
