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


def test_a_closed_pipe_is_not_an_error(tmp_path, client):
    """`torc-graph jobs show … | head -1` and `jobs list | head -1` exit 0, print nothing on
    stderr, small output and output larger than the pipe buffer alike."""
    import subprocess

    from torc_graph.testing import clean_env, cli_argv

    wf = client.add_workflow_specification({"name": "many", "jobs": [
        {"name": f"job_{i}", "command": "echo " + "x" * 60} for i in range(1500)]})["_key"]
    env = clean_env(TORC_GRAPH_DATABASE=client.database)
    for args in (("jobs", "show", wf, "job_1"), ("jobs", "list", wf), ("jobs", "list", wf, "--json")):
        proc = subprocess.run(
            ["bash", "-c", 'set -o pipefail; "$@" | head -1', "sh", *cli_argv(*args)],
            env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stderr == "" and len(proc.stdout.splitlines()) == 1
