"""Benchmark of the web dashboard's data endpoints on a large workflow (issue 13, item 2).

Builds a staged workflow of N jobs on a fresh SQLite file (``torc_graph.testing.
staged_workflow``: prep -> sim_* -> analyze_* -> report, N/10 finished, 2% of them failed, 20
running), serves it with a real gunicorn (``torc-graph serve``, 1 worker, auth on) and measures,
through HTTP with a logged-in dashboard session:

* ``GET /workflows/{wf}/dashboard/summary`` cold (first request of the worker: the stage
  structure and the results are read) and warm (a refresh: the caches hold), wall seconds and
  the server worker's CPU seconds;
* the same refresh after 1,000 more jobs completed (new results read incrementally);
* ``GET /dashboard/workflows`` and one drill-down page;
* baseline, same run: a raw ``SELECT key, status FROM doc_jobs`` of the workflow on the same
  file (the floor of any summary that shows live per-stage counts), and ``GET /ping``.

    python scripts/bench_dashboard.py --jobs 100000
    python scripts/bench_dashboard.py --jobs 100000 --json out.json --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from torc_graph.engine import execution

from torc_graph.store import open_store
from torc_graph.testing import LiveServer, staged_workflow


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _timed(session, url: str, pids: list[int]) -> tuple[float, float, dict]:
    cpu0, t0 = _cpu(pids), time.perf_counter()
    resp = session.get(url, timeout=600)
    wall = time.perf_counter() - t0
    resp.raise_for_status()
    return wall, _cpu(pids) - cpu0, resp.json()


def _raw_select(db: Path, wf: str) -> float:
    conn = sqlite3.connect(db)
    try:
        t0 = time.perf_counter()
        rows = conn.execute("SELECT key, status FROM doc_jobs WHERE wf = ? ORDER BY seq",
                            (wf,)).fetchall()
        assert rows
        return time.perf_counter() - t0
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5, help="warm refreshes measured")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    out: dict = {"jobs": args.jobs, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as d:
        db = Path(d) / "dash.db"
        store = open_store(f"sqlite:///{db}")
        t0 = time.perf_counter()
        wf = staged_workflow(store, args.jobs, finished=args.jobs // 10, failed_every=50,
                             running=20)
        out["build_s"] = round(time.perf_counter() - t0, 1)
        with LiveServer(f"sqlite:///{db}", workers=1, cwd=Path(d)) as server:
            pids = server.worker_pids()
            browser = server.browser()
            base = server.base_url
            summary = f"{base}/workflows/{wf}/dashboard/summary"
            wall, cpu, body = _timed(browser, summary, pids)
            out["summary_cold"] = {"wall_s": round(wall, 3), "server_cpu_s": round(cpu, 3)}
            warm = [_timed(browser, summary, pids)[:2] for _ in range(args.repeat)]
            out["summary_warm"] = {
                "wall_s_median": round(statistics.median(w for w, _ in warm), 3),
                "server_cpu_s_median": round(statistics.median(c for _, c in warm), 3)}
            out["summary_bytes"] = len(json.dumps(body))
            out["stages"] = {s["stage"]: s["total"] for s in body["stages"]}
            node = store.find("compute_nodes", wf)[0]["_key"]
            res = {"num_cpus": 10**6, "memory_gb": 10.0**6}
            claimed = execution.claim_jobs(store, wf, {"compute_node_key": node,
                                                       "resources": res, "limit": 1000})
            execution.complete_jobs(store, wf, {"compute_node_key": node, "run_id": 1,
                                                "completions": [
                {"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
                 "status": "done", "cause": "exit",
                 "result": {"return_code": 0, "exec_time_minutes": 0.1,
                            "completion_time": "2030-01-01T00:00:00"}}
                for j in claimed["jobs"]]})
            wall, cpu, after = _timed(browser, summary, pids)
            assert after["counts"]["done"] == body["counts"]["done"] + len(claimed["jobs"])
            out["summary_after_1000_completions"] = {"wall_s": round(wall, 3),
                                                     "server_cpu_s": round(cpu, 3)}
            wall, cpu, _ = _timed(browser, f"{base}/dashboard/workflows", pids)
            out["workflows_list"] = {"wall_s": round(wall, 3), "server_cpu_s": round(cpu, 3)}
            wall, cpu, _ = _timed(browser, f"{base}/workflows/{wf}/dashboard/stages/sim_%2A/"
                                  "jobs?skip=20000&limit=100", pids)
            out["stage_page"] = {"wall_s": round(wall, 3), "server_cpu_s": round(cpu, 3)}
            pings = [_timed(browser, f"{base}/dashboard/session", pids)[0] for _ in range(5)]
            out["baseline_session_get_wall_s_median"] = round(statistics.median(pings), 4)
        store.close()
        raw = [_raw_select(db, wf) for _ in range(3)]
        out["baseline_raw_select_s_median"] = round(statistics.median(raw), 3)
        out["ratio_warm_summary_wall_to_raw_select"] = round(
            out["summary_warm"]["wall_s_median"] / out["baseline_raw_select_s_median"], 2)
    out["load_after"] = os.getloadavg()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
