"""The byte-level depth check of fast-parsed request bodies (api/media._depth_within) decides
exactly as the walk over the parsed value (check_depth), brackets and quotes in strings
included, at the limit and one past it."""

import random

import orjson
import pytest

from torc_graph.api import media
from torc_graph.errors import InvalidInput

_TRICKY = ["[", "]", "{", "}", "][", "]]]", "[[[", '"', '\\"]', "\\", "a\"b[", "é[", "x"]


def _walk_ok(value, limit: int) -> bool:
    try:
        media.check_depth(value, limit, surrogates=False)
    except InvalidInput:
        return False
    return True


def _random_value(rnd: random.Random, depth: int):
    if depth <= 0 or rnd.random() < 0.25:
        return rnd.choice([rnd.choice(_TRICKY), 1, None, True, 2.5, ""])
    if rnd.random() < 0.5:
        return [_random_value(rnd, depth - rnd.randint(1, 2)) for _ in range(rnd.randint(0, 4))]
    return {rnd.choice(_TRICKY) + str(i): _random_value(rnd, depth - rnd.randint(1, 2))
            for i in range(rnd.randint(0, 4))}


def _nest(depth: int, inner, strings: tuple[str, ...] = ()):
    value = inner
    for i in range(depth):
        value = [*strings, value] if i % 2 else {"k" + "".join(strings): value, "s": strings}
    return value


@pytest.mark.parametrize("limit", [3, 6, 12])
def test_random_values_decide_as_the_walk(limit: int) -> None:
    rnd = random.Random(limit)
    seen = set()
    for _ in range(1500):
        value = _random_value(rnd, limit + 3)
        raw = orjson.dumps(value)
        expected = _walk_ok(value, limit)
        seen.add(expected)
        assert media._depth_within(raw, value, limit) is expected, raw
    assert seen == {True, False}


@pytest.mark.parametrize("strings", [(), ("]",), ("[",), ("][", "]"), ('"]', "x"), ("a\\b",)])
def test_the_limit_is_accepted_and_one_more_level_is_not(strings: tuple[str, ...]) -> None:
    limit = media.MAX_DEPTH
    for depth, ok in ((limit, True), (limit + 1, False)):
        value = _nest(depth - 1, list(strings))  # the innermost list is one level
        raw = orjson.dumps(value)
        assert _walk_ok(value, limit) is ok
        assert media._depth_within(raw, value, limit) is ok


def test_brackets_in_strings_do_not_hide_a_level() -> None:
    # As bare brackets, "]" before and "[" after a nest would cancel the outer level.
    limit = media.MAX_DEPTH
    value = ["]", _nest(limit, 1), "["]
    raw = orjson.dumps(value)
    assert b"\\" not in raw
    assert not _walk_ok(value, limit)
    assert media._depth_within(raw, value, limit) is False
