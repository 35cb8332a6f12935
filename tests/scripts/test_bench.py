"""The benchmark's code paths at tiny N, so the script cannot rot. Not timed: it asserts only that
every figure is produced with the fields the report promises."""

import importlib.util
import json
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_runs_every_figure_at_tiny_scale(tmp_path, capsys):
    if shutil.which("xargs") is None:
        pytest.skip("xargs not installed")
    bench = _load_bench()
    out = tmp_path / "bench.json"
    rc = bench.main([
        "--sizes", "300", "600", "--workers", "1", "2", "--throughput-jobs", "40",
        "--scale-jobs", "20", "--e2e-jobs", "20", "40", "--chain", "8", "--repeats", "2",
        "--ping-seconds", "0.3", "--server-workers", "2", "--batched-jobs", "60",
        "--batched-workers", "3", "--batch", "4", "--peers", "--peer-jobs", "10",
        "--no-dashboard",  # figure 12: test_bench_dashboard_figure_at_tiny_scale
        "--json", str(out),
    ])
    assert rc == 0
    report = json.loads(out.read_text())
    assert {f["figure"] for f in report["figures"]} == set(range(1, 12))
    batched_api = any('"/claim_jobs"' in p.read_text() for p in (ROOT / "torc_graph" / "api").glob("*.py"))
    for f in report["figures"]:
        assert {"name", "value", "baseline", "ratio", "target", "met"} <= f.keys()
        if f["figure"] == 9 and not batched_api:
            assert "not measured" in f["name"]  # until the batched execution API is merged
        elif f["figure"] == 10 and importlib.util.find_spec("dask") is None:
            assert "not measured" in f["name"]
        else:
            assert f["value"] is not None, f["name"]
    # figure 4: embedded and through a server, each against xargs, and the 20 -> 40 growth
    e2e = [f["name"] for f in report["figures"] if f["figure"] == 4]
    assert any(n.endswith("jobs, embedded") for n in e2e) and any(n.endswith("jobs, server") for n in e2e)
    assert sum("per-job cost growth" in n for n in e2e) == 2
    # figure 9 checks exactly-once completion itself (workers' records and the server's count)
    for f in (f for f in report["figures"] if f["figure"] == 9 and f["value"] is not None):
        assert "failures 0, completed 60, distinct 60, done in db 60" in f["name"]
    # figure 3 asserts exactly-once completion on the server side
    for f in (f for f in report["figures"] if f["figure"] == 3):
        assert "failures 0" in f["name"]
    growth = [f["name"] for f in report["figures"] if f["figure"] == 8]
    assert any(name.startswith("per-job cost growth of claim/start/complete") for name in growth)
    table = capsys.readouterr().out
    assert "| # | Figure | Value | Baseline | Ratio | Target | Met? |" in table
    assert report["machine"]["sqlite"] and report["machine"]["synchronous"] == "FULL"


@pytest.mark.slow
def test_bench_dashboard_figure_at_tiny_scale(tmp_path):
    from torc_graph import headless

    if headless.skip_reason():
        pytest.skip(headless.skip_reason())
    out = tmp_path / "bench.json"
    assert _load_bench().main(["--dashboard-only", "--dashboard-jobs", "40",
                               "--dashboard-repeats", "1", "--server-workers", "1",
                               "--json", str(out)]) == 0
    [figure] = json.loads(out.read_text())["figures"]
    assert figure["figure"] == 12 and "40 jobs" in figure["name"]
    assert figure["value"] > 0 and figure["baseline"] > 0 and figure["met"] is not None


@pytest.mark.slow
def test_bench_bulk_only_measures_creation_and_initialization(tmp_path):
    bench = _load_bench()
    out = tmp_path / "bulk.json"
    assert bench.main(["--bulk-only", "--sizes", "300", "600", "--server-workers", "2",
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {f["figure"] for f in report["figures"]} == {1, 2, 8}
    names = [f["name"] for f in report["figures"]]
    assert sum("server CPU" in n for n in names if n.startswith(("create", "initialize"))) == 4
    growth = [f for f in report["figures"] if f["figure"] == 8]
    assert [f["target"] for f in growth] == ["<= 1.3x"] * 4
    assert all(f["value"] > 0 for f in growth)


@pytest.mark.slow
@pytest.mark.parametrize("in_flight", [1, 3])
def test_bench_creation_names_the_blocker_in_flight_batches_back(tmp_path, monkeypatch, in_flight):
    """Figure 1 with K requests in flight: batch b is sent once the reply of batch b - K is
    decoded, and job i of the timed jobs is blocked by the i-th job created (seeds first)."""
    from torc_graph.store import open_store
    from torc_graph.testing import LiveServer

    bench = _load_bench()
    monkeypatch.setattr(bench, "BATCH", 7)
    n = 50  # a last, partial batch
    database = f"sqlite:///{tmp_path / 'b.db'}"
    with LiveServer(database, workers=2) as server:
        api = bench.Api(server.url)
        wf = bench.new_workflow(api, "in-flight")
        _secs, ids, _cpu = bench.create_dependent_jobs(api, wf, n, in_flight)
    assert len(ids) == len(set(ids)) == n + in_flight * 7
    store = open_store(database)
    try:
        names = {d["_id"]: d["name"] for d in store.iter_find("jobs", wf)}
        assert [names[i] for i in ids[in_flight * 7:]] == [f"job_{i}" for i in range(n)]
        edges = {(e["_from"], e["_to"]) for e in store.iter_find("blocks", wf)}
    finally:
        store.close()
    assert edges == {(ids[i], ids[i + in_flight * 7]) for i in range(n)}
