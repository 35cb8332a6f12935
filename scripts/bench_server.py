"""Benchmarks of the batched execution API and the server's worker class (issue 8, issue 14).

Every figure is a ratio or comparison measured in the same run (these machines are noisy):

* ``throughput``: W processes through a real gunicorn (``torc-graph serve``, 4 workers) run N
  no-op jobs with the batched API (``claim_jobs`` + ``complete_jobs`` with the piggy-backed
  claim, L jobs per call) and then N more with the torc v0.6.4 single-job path
  (``prepare_jobs_for_submission`` + ``start_job`` + ``complete_job``).
* ``workers``: plain gunicorn with ``sync`` vs ``gthread`` (8 threads) workers, 4 processes:
  8 long polls waiting 20 s — their durations, /ping answers while they wait, server CPU —
  then /ping and batched throughput.
* ``idle``: server CPU with no request vs with P long polls waiting.
* ``engine``: T threads of ONE process (as a gunicorn worker's) claim and complete N jobs
  through the engine on an embedded SQLite file, L jobs per call: the process's CPU ms per
  job (no HTTP, little noise from other load) and the mean number of requests merged into one
  engine call; ``--threads 1`` is the unmerged baseline of the same run.

    python scripts/bench_server.py throughput --jobs 4000 --procs 16 --batch 16
    python scripts/bench_server.py engine --jobs 4000 --batch 16 --threads 8
    python scripts/bench_server.py workers
    python scripts/bench_server.py idle --polls 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import requests

from torc_graph.client import Client
from torc_graph.config import SETTINGS
from torc_graph.testing import LiveServer, clean_env, free_port


def _workflow(client: Client, n: int, name: str = "bench") -> str:
    jobs = [{"name": f"k{i}", "command": "true"} for i in range(n)]
    wf = client.add_workflow_specification({"name": name, "user": "bench", "jobs": jobs})["_key"]
    client.initialize_jobs(wf)
    client.bump_run_id(wf)
    return wf


def _node(client: Client, wf: str, name: str) -> str:
    return client.add_document(wf, "compute_nodes", {
        "hostname": name, "pid": os.getpid(), "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 1, "memory_gb": 1.0}})["_key"]


def _batched(url: str, wf: str, batch: int, queue) -> None:
    res = {"num_cpus": batch, "memory_gb": 64.0}
    with Client(url) as c:
        node, done = _node(c, wf, f"b{os.getpid()}"), 0
        resp = c.claim_jobs(wf, node, res, limit=batch)
        while resp and resp["jobs"]:
            out = c.complete_jobs(wf, node, resp["run_id"], [
                {"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
                 "status": "done", "result": {"return_code": 0, "exec_time_minutes": 0,
                                              "completion_time": "t"}}
                for j in resp["jobs"]], claim={"resources": res, "limit": batch})
            assert all(i["outcome"] == "completed" for i in out["items"]), out["items"]
            done += len(resp["jobs"])
            resp = out["claimed"]
    queue.put(done)


def _single(url: str, wf: str, batch: int, queue) -> None:
    with Client(url) as c:
        node, done = _node(c, wf, f"s{os.getpid()}"), 0
        run = c.get_status(wf)["run_id"]
        while jobs := c.prepare_jobs_for_submission(wf, {"num_cpus": 4, "memory_gb": 8.0},
                                                    limit=4):
            for j in jobs:
                j = c.start_job(wf, j["_key"], j["_rev"], run, node)
                c.complete_job(wf, j["_key"], "done", j["_rev"], run, node, {
                    "job_key": j["_key"], "run_id": run, "return_code": 0,
                    "exec_time_minutes": 0, "completion_time": "t", "status": "done"})
                done += 1
    queue.put(done)


def _run_procs(target, url: str, wf: str, procs: int, batch: int, n: int,
               cpu: dict | None = None) -> float:
    """Jobs/s of ``procs`` processes running ``target``; with ``cpu``, also the server's and
    the clients' CPU ms per job (the figures that survive a loaded machine)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    ps = [ctx.Process(target=target, args=(url, wf, batch, queue)) for _ in range(procs)]
    server = cpu.pop("server_pid") if cpu is not None else None
    server0 = _server_cpu(server) if server else 0.0
    client0 = _children_cpu()
    start = time.monotonic()
    for p in ps:
        p.start()
    total = sum(queue.get(timeout=900) for _ in ps)
    for p in ps:
        p.join()
    seconds = time.monotonic() - start
    assert total == n, (total, n)
    if cpu is not None:
        cpu["server_cpu_ms_per_job"] = round((_server_cpu(server) - server0) / n * 1000, 3)
        cpu["client_cpu_ms_per_job"] = round((_children_cpu() - client0) / n * 1000, 3)
    return round(n / seconds, 1)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _py_spy(server: LiveServer, profile: str | None) -> subprocess.Popen | None:
    """``py-spy record`` of the server's processes into ``profile`` (raw collapsed stacks; CPU
    only, idle frames too with ``BENCH_PROFILE_IDLE=1``), or None without ``profile``. Needs
    root or ptrace rights."""
    if not profile:
        return None
    idle = ["--idle"] if os.environ.get("BENCH_PROFILE_IDLE") else []
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(server.proc.pid), "--subprocesses", *idle,
         "--format", "raw", "--rate", "200", "--output", profile],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_py_spy(spy: subprocess.Popen | None) -> None:
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        spy.wait(60)


def throughput(jobs: int, procs: int, batch: int, single_jobs: int | None = None,
               workers: int | None = None, profile: str | None = None) -> dict:
    """Batched vs single-job path through ``torc-graph serve`` (its default worker count
    unless ``workers``), each with the server's CPU per job; load before and after. With
    ``profile``, py-spy records the server during the batched run into that file."""
    single_jobs = single_jobs or jobs
    serve_workers = workers or next(s.default for s in SETTINGS if s.name == "workers")
    load = [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory() as d, \
            LiveServer(f"sqlite:///{d}/db.sqlite", workers=serve_workers) as server, \
            server.client() as client:
        bcpu = {"server_pid": server.proc.pid}
        wf = _workflow(client, jobs)
        spy = _py_spy(server, profile)
        try:
            batched = _run_procs(_batched, server.url, wf, procs, batch, jobs, bcpu)
        finally:
            _stop_py_spy(spy)
        scpu = {"server_pid": server.proc.pid}
        single = _run_procs(_single, server.url, _workflow(client, single_jobs), procs, batch,
                            single_jobs, scpu)
    load.append(round(os.getloadavg()[0], 2))
    return {"jobs": jobs, "single_jobs": single_jobs, "procs": procs, "batch": batch,
            "server_workers": serve_workers, "batched_jobs_per_s": batched,
            "batched_cpu_ms_per_job": bcpu, "single_job_path_jobs_per_s": single,
            "single_cpu_ms_per_job": scpu, "ratio": round(batched / single, 2),
            "load_before_after": load}


def _server_cpu(pid: int) -> float:
    procs = [psutil.Process(pid)] + psutil.Process(pid).children()
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def _gunicorn(kind: str, db: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    threads = ["--threads", "8"] if kind == "gthread" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "4", "-k", kind, *threads, "-b",
         f"127.0.0.1:{port}", "--timeout", "300", "torc_graph.app:get_app()"],
        env=clean_env(TORC_GRAPH_DATABASE=db, TORC_GRAPH_LOG_LEVEL="warning",
                      TORC_GRAPH_AUTH="off"),  # loopback benchmark of worker classes
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(url + "/ping", timeout=1).ok:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def _wait_polls(url: str, wf: str, n: int, wait: float) -> tuple[list, list[threading.Thread]]:
    durations: list = []

    def poll(i: int) -> None:
        with Client(url) as c:
            node = _node(c, wf, f"p{i}")
            t = time.monotonic()
            # No job fits 0 CPUs: the poll waits the whole time.
            c.claim_jobs(wf, node, {"num_cpus": 0, "memory_gb": 1.0}, limit=1,
                         wait_seconds=wait)
            durations.append(round(time.monotonic() - t, 1))

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return durations, threads


def workers_compare(wait: float = 20, jobs: int = 4000) -> dict:
    out = {}
    for kind in ("sync", "gthread"):
        with tempfile.TemporaryDirectory() as d:
            proc, url = _gunicorn(kind, f"sqlite:///{d}/db.sqlite")
            try:
                with Client(url) as client:
                    wf = _workflow(client, 1)
                    durations, threads = _wait_polls(url, wf, 8, wait)
                    time.sleep(1.5)
                    cpu0, pings, errors = _server_cpu(proc.pid), [], 0
                    for _ in range(5):
                        t = time.monotonic()
                        try:
                            requests.get(url + "/ping", timeout=wait * 1.5).raise_for_status()
                            pings.append(time.monotonic() - t)
                        except requests.RequestException:
                            errors += 1
                    time.sleep(max(0.0, 5 - sum(pings)))
                    cpu = (_server_cpu(proc.pid) - cpu0) / max(5.0, sum(pings))
                    for t in threads:
                        t.join(wait * 3)
                    rate = _run_procs(_batched, url, _workflow(client, jobs), 4, 8, jobs)
                out[kind] = {"poll_durations_s": sorted(durations),
                             "ping_median_s_during_polls": round(statistics.median(pings), 4)
                             if pings else None, "ping_failures": errors,
                             "server_cpu_s_per_s_during_polls": round(cpu, 3),
                             "batched_jobs_per_s_4_procs": rate}
            finally:
                proc.terminate()
                proc.wait(30)
    return out


def idle(polls: int, wait: float = 30) -> dict:
    with tempfile.TemporaryDirectory() as d, \
            LiveServer(f"sqlite:///{d}/db.sqlite", workers=4) as server, \
            Client(server.url) as client:
        wf = _workflow(client, 1)
        time.sleep(2)
        cpu0 = _server_cpu(server.proc.pid)
        time.sleep(5)
        base = (_server_cpu(server.proc.pid) - cpu0) / 5
        _, threads = _wait_polls(server.url, wf, polls, wait)
        time.sleep(3)
        cpu0 = _server_cpu(server.proc.pid)
        time.sleep(10)
        busy = (_server_cpu(server.proc.pid) - cpu0) / 10
        for t in threads:
            t.join(wait * 2)
    return {"polls": polls, "server_cpu_s_per_s_idle": round(base, 4),
            "server_cpu_s_per_s_polls_waiting": round(busy, 4),
            "cpu_ms_per_s_per_poll": round((busy - base) / polls * 1000, 2)}


def engine(jobs: int, batch: int, threads: int) -> dict:
    """CPU per job of batched claim/complete through the engine in one process (module doc),
    with ``threads`` concurrent workers and with one, in the same run; every job exactly
    once."""
    from torc_graph.engine import execution, initialize
    from torc_graph.engine import jobs as job_docs
    from torc_graph.engine import workflows
    from torc_graph.store import open_store

    def run(store, n_threads: int) -> dict:
        wf = workflows.create_workflow(store, {"user": "bench", "name": "engine"})["_key"]
        status = store.workflow_space(wf).status
        store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
        job_docs.add_jobs(store, wf, {"jobs": [{"name": f"k{i}", "command": "true"}
                                               for i in range(jobs)]})
        initialize.initialize_jobs(store, wf)
        res, seen, sizes = {"num_cpus": batch, "memory_gb": 64.0}, [], []
        real = execution._complete_merged

        def counted(s, w, requests):
            sizes.append(len(requests))
            return real(s, w, requests)

        def worker() -> None:
            node = store.insert("compute_nodes", wf, {
                "hostname": "n", "pid": 1, "start_time": "t", "is_active": True,
                "resources": {"num_cpus": 1, "memory_gb": 1.0}})["_key"]
            resp = execution.claim_jobs(store, wf, {"compute_node_key": node,
                                                    "resources": res, "limit": batch})
            while resp and resp["jobs"]:
                seen.extend(j["_key"] for j in resp["jobs"])
                resp = execution.complete_jobs(store, wf, {
                    "compute_node_key": node, "run_id": resp["run_id"], "completions": [
                        {"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
                         "status": "done", "result": {"return_code": 0,
                                                      "exec_time_minutes": 0,
                                                      "completion_time": "t"}}
                        for j in resp["jobs"]], "claim": {"resources": res, "limit": batch}}
                )["claimed"]

        execution._complete_merged = counted
        try:
            ts = [threading.Thread(target=worker) for _ in range(n_threads)]
            cpu, wall = time.process_time(), time.monotonic()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        finally:
            execution._complete_merged = real
        assert len(seen) == len(set(seen)) == jobs, (len(seen), len(set(seen)), jobs)
        return {"threads": n_threads, "cpu_ms_per_job": round(cpu / jobs * 1000, 3),
                "jobs_per_s": round(jobs / wall, 1),
                "mean_requests_per_engine_call": round(sum(sizes) / max(1, len(sizes)), 2)}

    load = [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory() as d:
        store = open_store(f"sqlite:///{d}/db.sqlite")
        try:
            runs = [run(store, 1), run(store, threads)]
        finally:
            store.close()
    load.append(round(os.getloadavg()[0], 2))
    return {"jobs": jobs, "batch": batch, "runs": runs,
            "cpu_ratio_threads_vs_one": round(runs[1]["cpu_ms_per_job"]
                                              / runs[0]["cpu_ms_per_job"], 3),
            "load_before_after": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--jobs", type=int, default=4000)
    tp.add_argument("--procs", type=int, default=16)
    tp.add_argument("--batch", type=int, default=16)
    tp.add_argument("--single-jobs", type=int, help="jobs of the single-job path (default --jobs)")
    tp.add_argument("--workers", type=int, help="server workers (default: serve's default)")
    tp.add_argument("--profile", help="py-spy the server's batched run into this file (raw)")
    wk = sub.add_parser("workers")
    wk.add_argument("--wait", type=float, default=20)
    wk.add_argument("--jobs", type=int, default=4000)
    il = sub.add_parser("idle")
    il.add_argument("--polls", type=int, default=16)
    il.add_argument("--wait", type=float, default=30)
    en = sub.add_parser("engine")
    en.add_argument("--jobs", type=int, default=4000)
    en.add_argument("--batch", type=int, default=16)
    en.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    if args.figure == "throughput":
        result = throughput(args.jobs, args.procs, args.batch, args.single_jobs, args.workers,
                            args.profile)
    elif args.figure == "workers":
        result = workers_compare(args.wait, args.jobs)
    elif args.figure == "engine":
        result = engine(args.jobs, args.batch, args.threads)
    else:
        result = idle(args.polls, args.wait)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
