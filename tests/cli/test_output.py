"""Table cells: long texts are cut between words, with an ellipsis."""

from __future__ import annotations

from torc_graph.cli.output import ELLIPSIS, truncate


def test_truncate_between_words():
    assert truncate("Started job 12 (postprocess) on node01", 30) == "Started job 12 (postprocess)" + ELLIPSIS
    assert truncate("short", 30) == "short"
    assert truncate("one two", 6) == "one" + ELLIPSIS  # the space is in the last third
    assert truncate("abcdefghij", 5) == "abcd" + ELLIPSIS  # one long word: hard cut
    assert truncate("a bcdefghijkl", 8) == "a bcdef" + ELLIPSIS  # space too early: hard cut
    assert truncate("abc def", 0) == ""
    for width in range(1, 40):
        assert len(truncate("the quick brown fox jumps over the lazy dog", width)) <= width


def test_event_messages_are_not_cut_mid_word(invoke, diamond, client):
    client.add_event(diamond.key, {"category": "job", "type": "note",
                                   "message": "alpha beta gamma delta epsilon zeta eta theta "
                                              "iota kappa lambda mu nu xi omicron pi rho sigma"})
    lines = invoke("events", "list", diamond.key).stdout.splitlines()
    line = next(line for line in lines if " note " in line)
    assert len(line) <= 80 and line.endswith(ELLIPSIS)
    last_word = line.split()[-1].rstrip(ELLIPSIS)
    assert last_word in "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
