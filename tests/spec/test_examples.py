"""Every example specification reads and creates the workflow it describes (the runs
themselves are tested in tests/cli/test_run.py)."""

from pathlib import Path

import pytest

from torc_graph.engine import specifications as specs
from torc_graph.spec import read_file
from torc_graph.store import open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: example -> (number of jobs, {job: sorted blockers} spot checks)
EXPECTED = {
    "diamond.yaml": (4, {}),
    "user_data.yaml": (2, {}),
    "sweep.json5": (9, {}),
    "fan_in.yaml": (1002, {"part_0042": ["setup"], "total": None}),
    "pipeline.kdl": (5, {"report": ["train_0.1", "train_0.2", "train_0.4"]}),
    "retry.yaml": (3, {"flaky": ["setup"]}),
    "slurm.yaml": (8, {}),
}


def test_every_example_is_listed():
    specs_ = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".json5", ".kdl")}
    assert specs_ == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_creates(tmp_path, name):
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}", synchronous="NORMAL")
    try:
        wf = specs.create_from_specification(store, read_file(EXAMPLES / name))["_key"]
        got = specs.get_workflow_specification(store, wf)
    finally:
        store.close()
    count, blockers = EXPECTED[name]
    jobs = {j["name"]: j for j in got["jobs"]}
    assert len(jobs) == count
    for job, want in blockers.items():
        if want is None:
            assert len(jobs[job]["blocked_by"]) == count - 2
        else:
            assert sorted(jobs[job]["blocked_by"]) == want
    if name == "retry.yaml":
        (handler,) = got["config"]["failure_handlers"]
        assert [r["max_retries"] for r in handler["rules"]] == [3, 1]
        assert jobs["flaky"]["failure_handler"] == "transient"
        assert jobs["report"]["input_files"] == ["result"]
