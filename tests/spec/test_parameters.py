"""Parameter values, printing and formats of current torc specs (spec format §4.2-§4.4)."""

import math

import pytest

from torc_graph.spec.parameters import Template, combinations, display, formatted, parse_values


@pytest.mark.parametrize("raw, values", [
    ("1:5", [1, 2, 3, 4, 5]),
    ("{1:5}", [1, 2, 3, 4, 5]),
    (" 1:100:25 ", [1, 26, 51, 76]),
    ("10:1:-3", [10, 7, 4, 1]),
    ("5:1", []),
    ("1:3:", [1, 2, 3]),
    ("0.0:0.3:0.1", [0.0, 0.1, 0.2, 0.30000000000000004]),
    ("0.1:0.3:0.1", [0.1, 0.2, 0.30000000000000004]),
    ("0.0001:0.01:10", [0.0001]),
    ("1.0:0.0:-0.5", [1.0, 0.5, 0.0]),
    ("[1, 2.5, x]", [1, 2.5, "x"]),
    ("[a, b]", ["a", "b"]),
    ("['a','b']", ["a", "b"]),
    ('["a"]', ["a"]),
    ("[1,2,]", [1, 2, ""]),
    ("[]", []),
    ("[[1, 2]]", [1, 2]),
    ("[1.0,2.0]", [1.0, 2.0]),
    ("7", [7]),
    ("-7", [-7]),
    ("1e3", [1000.0]),
    (".5", [0.5]),
    ("1_000", ["1_000"]),
    ("hello", ["hello"]),
    ("99999999999999999999", [1e20]),
])
def test_value_grammar(raw, values):
    got = parse_values(raw)
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]


@pytest.mark.parametrize("raw, message", [
    ("a:b", "start and end must be numbers"),
    ("1:2:3:4", "START:END"),
    ("1:10:0.5", "must be an integer"),
    ("1:10:0", "must not be 0"),
    ("0.0:1.0:0", "non-zero"),
])
def test_bad_ranges(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_values(raw)


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (-0.0, "-0"), (1e-7, "0.0000001"), (1e21, "1000000000000000000000"),
    (math.nan, "NaN"), (math.inf, "inf"), (0.30000000000000004, "0.30000000000000004"),
    (5, "5"), ("s", "s"), (2.5, "2.5"),
])
def test_display_is_rust_display(value, text):
    assert display(value) == text


@pytest.mark.parametrize("value, spec, text", [
    (5, "03d", "005"), (-5, "03d", "-05"), (0.125, ".2f", "0.12"), (0.1, ".4f", "0.1000"),
    (5, "3d", "5"), (0.001, ".2e", "0.001"), (5, ".2f", "5"), (1.5, "03d", "1.5"),
    ("x", "03d", "x"),
])
def test_format_specs(value, spec, text):
    assert formatted(value, spec) == text


def test_template_substitutes_every_form_once():
    """Mixed {lr} and {lr:.4f} both substitute ([REC]); {{i}} gives {5}; other braces stay."""
    values = {"lr": [0.001], "i": [5]}
    for text, want in [
        ("--lr={lr} --tag={lr:.4f}", "--lr=0.001 --tag=0.0010"),
        ("{{i}} ${HOME} {a,b} {i:03d}", "{5} ${HOME} {a,b} 005"),
        ("${files.input.raw_{i}}", "${files.input.raw_5}"),
    ]:
        t = Template(text, list(values))
        table = {slot: [formatted(v, slot[1]) for v in values[slot[0]]] for slot in t.slots()}
        assert t.render({"lr": 0, "i": 0}, table) == want


def test_product_is_declaration_order_and_zip_checks_lengths():
    assert list(combinations({"a": [1, 2], "b": [3, 4, 5]}, False)) == [
        {"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 0, "b": 2},
        {"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 2}]
    assert list(combinations({"a": [1, 2], "b": [3, 4]}, True)) == [
        {"a": 0, "b": 0}, {"a": 1, "b": 1}]
    assert list(combinations({"a": [], "b": [1]}, False)) == []
    with pytest.raises(ValueError, match="'a' has 2, 'b' has 3"):
        list(combinations({"a": [1, 2], "b": [3, 4, 5]}, True))
