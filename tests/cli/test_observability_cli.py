"""``torc-graph jobs why`` and ``torc-graph workflows critical-path`` in-process on a real
SQLite file: every explain reason in JSON and as text, names instead of keys, and the
critical-path table of a known DAG."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from torc_graph.store import open_store

_spec = importlib.util.spec_from_file_location(
    "explain_scenarios", Path(__file__).parents[1] / "engine" / "explain_scenarios.py")
scenarios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenarios)


_hold_leases = scenarios.hold_leases


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    yield s
    s.close()


def test_why_every_reason(invoke, parse_json, store):
    cases = scenarios.build_all(store)
    for name, case in cases.items():
        scenarios.check(case, parse_json(invoke("jobs", "why", case.workflow, case.job,
                                                "--json")))
        text = invoke("jobs", "why", case.workflow, case.job)
        assert text.exit_code == 0, text.output
        assert text.output.startswith(f"Job {case.job} (")
        for code in case.codes:
            assert f"* [{code}] " in text.output, (name, text.output)


def test_why_renders_the_chain_by_names(invoke, store):
    cases = scenarios.build_all(store)
    result = invoke("jobs", "why", "blocked", "c")  # workflow and job by name
    assert result.exit_code == 0, result.output
    out = result.output
    case = cases["blocked"]
    assert f"Job {case.job} (c): blocked" in out
    assert "Unfinished blockers" in out and "Where the chain ends" in out
    a = case.facts["chain"][1]
    assert f"  {a} (a): ready, can run: waits for a worker" in out
    missing = invoke("jobs", "why", "blocked", "nosuchjob")
    assert missing.exit_code == 4 and "no job with key or name 'nosuchjob'" in missing.output


def test_critical_path_table(invoke, parse_json, store):
    wf, k = scenarios.known_dag(store)
    store.delete("jobs", wf, k["e"])
    answer = parse_json(invoke("workflows", "critical-path", wf, "--json"))
    assert [r["key"] for r in answer["critical_path"]["jobs"]] == [k["a"], k["c"], k["d"]]
    out = invoke("workflows", "critical-path", "cp").output  # by name
    lines = out.splitlines()
    assert lines[0] == "Critical path (3 jobs)"
    row = next(line.split() for line in lines if line.startswith(f"{k['a']} "))
    assert row == [k["a"], "a", "done", "120.0", "recorded", "0.0"]
    row = next(line.split() for line in lines if line.startswith(f"{k['d']} "))
    assert row == [k["d"], "d", "blocked", "300.0", "declared", "300.0"]
    assert "Length: 0:37:00 (0:02:00 recorded, 0:35:00 declared or unknown)" in out
    assert "Remaining critical path (2 unfinished jobs)" in out
    # 1500 s minus the few seconds at most this test has taken since c's claim was backdated
    h, m, sec = re.search(r"Estimated remaining makespan: (\d+):(\d\d):(\d\d)", out).groups()
    assert 1490 <= int(h) * 3600 + int(m) * 60 + int(sec) <= 1500
    assert "(4 jobs, 4 blocking edges)" in out
