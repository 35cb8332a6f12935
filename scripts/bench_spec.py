#!/usr/bin/env python3
"""Worker CPU per job of a streamed ``POST /workflow_specifications`` against ``bulk_jobs``.

For each size N, one fresh ``torc-graph serve`` with one worker (torc_graph.testing.LiveServer,
auth on) creates the same N jobs twice:

* **spec**: one synchronous POST of a v0.6.4 specification file (what torc-client 0.6.4's
  ``create_workflow_from_spec`` sends; streamed from the file): jobs named ``j<i>``, job i
  blocked by job i - ``--lag`` (by name), 3 resource requirements, 10 files read by half the
  jobs, 10 user data read by a quarter, like a real campaign;
* **bulk** (the baseline, same run, same server): the workflow, its files, user data and
  resource requirements created by single POSTs, then the jobs in ``bulk_jobs`` requests of
  ``--batch`` jobs with relation ids (``blocked_by`` ids of earlier batches).

Prints one JSON line per case: seconds, worker CPU seconds (user+sys of the gunicorn worker),
ms of worker CPU per job, jobs/s, and for the spec case its ratio to the bulk case:

    python scripts/bench_spec.py --sizes 100000
    python scripts/bench_spec.py --sizes 1000000

``--embedded`` runs both in this process instead (engine calls on a fresh SQLite file: the
stream path's ``staging.create`` and ``jobs.add_jobs``), e.g. for py-spy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from torc_graph.testing import LiveServer

FILES, USER_DATA = 10, 10
RRS = [{"name": "small", "num_cpus": 1, "memory": "1g", "runtime": "P0DT1H"},
       {"name": "medium", "num_cpus": 4, "memory": "8g", "runtime": "P0DT4H"},
       {"name": "large", "num_cpus": 16, "memory": "64g", "runtime": "P0DT12H"}]


def _file(k: int) -> dict:
    return {"name": f"f{k}", "path": f"data/f{k}.json"}


def _user_data(k: int) -> dict:
    return {"name": f"u{k}", "data": {"k": k, "alpha": 0.5}}


def _job(i: int, lag: int) -> dict:
    """Job i of the specification (relations by name)."""
    job = {"name": f"j{i}", "command": f"python run.py --case {i}",
           "resource_requirements": RRS[i % 3]["name"]}
    if i >= lag:
        job["blocked_by"] = [f"j{i - lag}"]
    if i % 2:
        job["input_files"] = [f"f{i % FILES}"]
    if i % 4 == 1:
        job["input_user_data"] = [f"u{i % USER_DATA}"]
    return job


def write_spec(path: Path, n: int, lag: int) -> int:
    """Write the N-job specification; return its size in bytes."""
    with open(path, "w") as f:
        f.write('{"name": "campaign", "user": "bench", "files": ')
        f.write(json.dumps([_file(k) for k in range(FILES)]))
        f.write(', "user_data": ' + json.dumps([_user_data(k) for k in range(USER_DATA)]))
        f.write(', "resource_requirements": ' + json.dumps(RRS) + ', "jobs": [')
        for i in range(n):
            f.write(("," if i else "") + json.dumps(_job(i, lag)))
        f.write("]}")
    return path.stat().st_size


def bulk_batches(n: int, lag: int, batch: int, ids: dict[str, str], post):
    """Create the same jobs by ``bulk_jobs`` bodies; ``post(body)`` returns the stored jobs;
    ``ids`` maps file/user data/rr names to ids."""
    job_ids: list[str] = []
    for start in range(0, n, batch):
        bodies = []
        for i in range(start, min(n, start + batch)):
            job = _job(i, lag)
            body = {"name": job["name"], "command": job["command"],
                    "resource_requirements": ids[job["resource_requirements"]]}
            if "blocked_by" in job:
                body["blocked_by"] = [job_ids[i - lag]]
            for field in ("input_files", "input_user_data"):
                if field in job:
                    body[field] = [ids[name] for name in job[field]]
            bodies.append(body)
        job_ids.extend(d["_id"] for d in post({"jobs": bodies}))


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _result(case: str, n: int, seconds: float, cpu: float, **extra) -> dict:
    return {"case": case, "jobs": n, "seconds": round(seconds, 2), "worker_cpu_s": round(cpu, 2),
            "cpu_ms_per_job": round(1000 * cpu / n, 4), "jobs_per_s": round(n / seconds),
            **extra}


def measure_live(n: int, tmp: Path, lag: int, batch: int) -> list[dict]:
    spec = tmp / f"spec-{n}.json"
    size = write_spec(spec, n, lag)
    db = tmp / f"b-{n}.db"
    out = []
    with LiveServer(f"sqlite:///{db}", workers=1, startup_timeout=120) as server:
        client = server.client(timeout=7200)
        client.get("/workflows")  # the worker is warm (imports, connection)
        (pid,) = server.worker_pids()
        proc = psutil.Process(pid)

        cpu0, t0 = _cpu(proc), time.perf_counter()
        with open(spec, "rb") as body:
            wf = client.post("/workflow_specifications", body)["_key"]
        seconds, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
        total = client.get(f"/workflows/{wf}/jobs", limit=1)["total_count"]
        assert total == n, (total, n)
        out.append(_result("spec", n, seconds, cpu, spec_bytes=size))

        cpu0, t0 = _cpu(proc), time.perf_counter()
        wf = client.post("/workflows", {"name": "campaign", "user": "bench"})["_key"]
        ids = {}
        for coll, docs in (("files", [_file(k) for k in range(FILES)]),
                           ("user_data", [_user_data(k) for k in range(USER_DATA)]),
                           ("resource_requirements", RRS)):
            for doc in docs:
                ids[doc["name"]] = client.post(f"/workflows/{wf}/{coll}", doc)["_id"]
        bulk_batches(n, lag, batch, ids,
                     lambda body: client.post(f"/workflows/{wf}/bulk_jobs", body)["items"])
        seconds, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
        out.append(_result("bulk_jobs", n, seconds, cpu, batch=batch))
    for p in tmp.glob(f"b-{n}.db*"):
        p.unlink()
    spec.unlink()
    out[0]["cpu_ratio_to_bulk"] = round(out[0]["worker_cpu_s"] / out[1]["worker_cpu_s"], 3)
    return out


def measure_embedded(n: int, tmp: Path, lag: int, batch: int, cases: list[str]) -> list[dict]:
    from torc_graph.engine import jobs, staging, workflows
    from torc_graph.store import open_store

    spec = tmp / f"spec-{n}.json"
    size = write_spec(spec, n, lag)
    out = []
    if "spec" in cases:
        store = open_store(f"sqlite:///{tmp / 'e-spec.db'}")
        body = tmp / "body.json"
        shutil.copy(spec, body)
        cpu0, t0 = time.process_time(), time.perf_counter()
        staging.create(store, staging.SpooledSpec(str(body), None))
        out.append(_result("spec", n, time.perf_counter() - t0, time.process_time() - cpu0,
                           spec_bytes=size))
        store.close()
    if "bulk" in cases:
        from torc_graph.engine import documents

        store = open_store(f"sqlite:///{tmp / 'e-bulk.db'}")
        cpu0, t0 = time.process_time(), time.perf_counter()
        wf = workflows.create_workflow(store, {"name": "campaign", "user": "bench"})["_key"]
        ids = {}
        for coll, docs in (("files", [_file(k) for k in range(FILES)]),
                           ("user_data", [_user_data(k) for k in range(USER_DATA)]),
                           ("resource_requirements", RRS)):
            for doc in docs:
                ids[doc["name"]] = documents.add_document(store, wf, coll, doc)["_id"]
        bulk_batches(n, lag, batch, ids, lambda body: jobs.add_jobs(store, wf, body)["items"])
        out.append(_result("bulk_jobs", n, time.perf_counter() - t0, time.process_time() - cpu0,
                           batch=batch))
        store.close()
    if len(out) == 2:
        out[0]["cpu_ratio_to_bulk"] = round(out[0]["worker_cpu_s"] / out[1]["worker_cpu_s"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--lag", type=int, default=10_000,
                    help="job i is blocked by job i - LAG (default 10000; >= --batch)")
    ap.add_argument("--batch", type=int, default=10_000, help="jobs per bulk_jobs request")
    ap.add_argument("--embedded", action="store_true",
                    help="engine calls in this process instead of a live server")
    ap.add_argument("--cases", nargs="+", default=["spec", "bulk"], choices=["spec", "bulk"],
                    help="with --embedded: which cases to run")
    args = ap.parse_args(argv)
    if args.lag < args.batch:
        ap.error("--lag must be >= --batch (bulk_jobs names only jobs of earlier requests)")
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rows = (measure_embedded(n, Path(tmp), args.lag, args.batch, args.cases)
                    if args.embedded else measure_live(n, Path(tmp), args.lag, args.batch))
            for row in rows:
                print(json.dumps(row), flush=True)
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
