"""scripts/bench_server.py at tiny scale, so the script cannot rot (not timed)."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_figure_runs_at_tiny_scale(capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_server", ROOT / "scripts" / "bench_server.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.throughput(40, 2, 4)
    assert result["batched_jobs_per_s"] > 0 and result["single_job_path_jobs_per_s"] > 0
    assert result["batched_cpu_ms_per_job"]["server_cpu_ms_per_job"] > 0
    workers = bench.workers_compare(wait=2, jobs=40)
    assert set(workers) == {"sync", "gthread"}
    assert len(workers["gthread"]["poll_durations_s"]) == 8
    assert bench.idle(2, wait=14)["polls"] == 2
