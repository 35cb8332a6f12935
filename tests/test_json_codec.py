"""The fast JSON codec gives the standard library's results exactly where orjson would differ."""

import json
import math

import pytest

from torc_graph import json_codec


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1.5, -0.0, 1e16, None, True], "c": "é\u2028"},
    {"big": 2**70, "neg": -(2**64)},  # beyond 64 bits: exact, not floats
    {"name": "null and void", "x": None},
    {"emoji": "\U0001F600"},
    {"digits": "x" + "7" * 25, "n": 10**18},  # 19+ digits in a string: exact path, same value
])
def test_round_trip_equals_the_standard_library(value):
    text = json_codec.dumps(value)
    assert json_codec.loads(text) == json.loads(text) == value
    assert json_codec.loads(json_codec.dumpb(value)) == value
    for v in (json_codec.loads(text).get("big"), json_codec.loads(text).get("neg")):
        assert v is None or isinstance(v, int)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_not_written_as_null(bad):
    for encode in (json_codec.dumps, json_codec.dumpb):
        with pytest.raises(ValueError):
            encode({"x": [1, bad]})


@pytest.mark.parametrize("value", [{"x": None, "y": math.nan}, [None, {"z": [math.inf]}],
                                   (None, -math.inf)])
def test_non_finite_numbers_beside_nulls_are_refused(value):
    for encode in (json_codec.dumps, json_codec.dumpb):
        with pytest.raises(ValueError):
            encode(value)


def test_nulls_take_the_fast_path(monkeypatch):
    value = {"execution": {"compute_node": None, "attempt_id": 1}, "l": [None, 1.5]}
    monkeypatch.setattr(json_codec, "_STDLIB", None)  # any fallback would fail
    assert json_codec.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert json_codec.dumpb(value) == json_codec.dumps(value).encode()


def test_values_orjson_refuses_take_the_standard_path():
    assert json_codec.dumps({1: "a"}) == '{"1":"a"}'  # json converts int keys
    with pytest.raises(TypeError):
        json_codec.dumps({"x": object()})


@pytest.mark.parametrize("raw", [b'{"a": 123456789012345678901234567890}', b'{"a": 1e400}',
                                 b'{"a": "\\ud800"}', b'{"a": NaN}', b"[" * 2000])
def test_requests_orjson_would_decode_differently_fall_back(raw):
    assert json_codec.loads_request(raw) == (False, None)


def test_request_fast_path():
    assert json_codec.loads_request(b'{"jobs": [{"name": "a"}], "n": 12}') == (
        True, {"jobs": [{"name": "a"}], "n": 12})
