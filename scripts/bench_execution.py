"""Execution figures of ``scripts/bench.py`` (issue 14's acceptance benchmarks).

* Figure 4 — end to end: ``torc-graph run`` of N no-op jobs (parallelism 2) on the embedded
  store AND through a server (``run --url``), each as a ratio to ``xargs -P2 true`` timed in the
  same run, at every N given (the per-job cost growth between the smallest and largest N too).
* Figure 9 — W concurrent processes using the batched execution API of
  ``docs/execution-model.md`` §4 (``claim_jobs`` then ``complete_jobs`` carrying the next
  ``claim``): aggregate completions/s through gunicorn, failures, and every job completed exactly
  once (by the workers' own records and by the server's count).
* ``--baseline TREE [--ab-pairs K]`` — the embedded run of another source tree (e.g. a
  ``git archive`` of the base commit) in the same run; with ``--ab-pairs`` only K alternating
  embedded runs of both trees and their medians (a before/after on a shared machine).
* Figure 10 — ``--peers``: the same no-op jobs on Dask distributed (LocalCluster, 2 workers × 1
  thread) as a ratio to xargs in the same run; skipped when Dask is not installed.

Not installed with torc_graph; ``bench.py`` imports it from its own directory.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import resource
import subprocess
import time
from pathlib import Path

import requests

from torc_graph.config import SETTINGS
from torc_graph.testing import LiveServer, cli_argv, clean_env

SETTINGS_DEFAULTS = {s.name: s.default for s in SETTINGS}

PARALLELISM = 2


class EndpointMissing(RuntimeError):
    """The server does not offer the batched execution API (404/405)."""


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: CPU seconds (user + system, the process and everything it waited for) of the last
#: :func:`xargs_rate` / :func:`_run_cli` call: steadier than wall time on a shared machine.
LAST_CPU = [0.0]


def xargs_rate(n: int) -> float:
    """``seq N | xargs -P2 -n1 true``: the limit for N no-op processes at parallelism 2."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P {PARALLELISM} -n1 true", shell=True, check=True)
    LAST_CPU[0] = _children_cpu() - cpu0
    return n / (time.perf_counter() - t0)


def _run_cli(args: list[str], env: dict[str, str]) -> float:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cli_argv(*args), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    LAST_CPU[0] = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"torc-graph {args[0]} failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    return seconds


def end_to_end(n: int, workdir: Path, synchronous: str, server_workers: int,
               baseline: str | None = None) -> dict:
    """Rates (jobs/s) of ``torc-graph run`` embedded and through a fresh server, and of xargs,
    measured one after the other (xargs between the two, so drift shows in the ratios).
    ``baseline``: a source tree whose embedded run is timed too (right after this tree's), for
    a same-run before/after comparison."""
    spec = {"name": "noop", "jobs": [{"name": f"noop_{i}", "command": "true"} for i in range(n)]}
    spec_path = workdir / f"noop_{n}.json"
    spec_path.write_text(json.dumps(spec))
    env = clean_env(TORC_GRAPH_SQLITE_SYNCHRONOUS=synchronous)
    common = ["--num-cpus", str(PARALLELISM)]
    embedded = _run_cli(["run", str(spec_path), "--database", f"sqlite:///{workdir / f'e2e_{n}.db'}",
                         "--output", str(workdir / f"out_e_{n}"), *common], env)
    embedded_cpu = LAST_CPU[0]
    base: dict = {}
    if baseline is not None:
        base_env = dict(env, PYTHONPATH=str(Path(baseline).absolute()))
        seconds = _run_cli(["run", str(spec_path), "--database",
                            f"sqlite:///{workdir / f'e2e_base_{n}.db'}",
                            "--output", str(workdir / f"out_b_{n}"), *common], base_env)
        base = {"baseline_per_s": n / seconds, "baseline_cpu_ms": 1e3 * LAST_CPU[0] / n}
    xargs = xargs_rate(n)
    xargs_cpu = LAST_CPU[0]
    with LiveServer(f"sqlite:///{workdir / f'e2e_server_{n}.db'}", workers=server_workers,
                    log_path=workdir / f"e2e_server_{n}.log",
                    env={"TORC_GRAPH_SQLITE_SYNCHRONOUS": synchronous}) as server:
        served = _run_cli(["run", str(spec_path), "--url", server.url,
                           "--output", str(workdir / f"out_s_{n}"), *common], env)
    # The served run's CPU misses the server (not a child of this process): embedded only.
    return {"embedded_per_s": n / embedded, "server_per_s": n / served, "xargs_per_s": xargs,
            "embedded_cpu_ms": 1e3 * embedded_cpu / n, "xargs_cpu_ms": 1e3 * xargs_cpu / n,
            **base}


def embedded_ab(n: int, workdir: Path, synchronous: str, baseline: str, pairs: int) -> None:
    """Print ``pairs`` alternating embedded runs of this tree and ``baseline`` (the order
    swapped every pair, xargs after each pair) and the medians: rate and CPU per job (user+sys
    of the CLI and its jobs, create included). Steadier than one run on a shared machine."""
    import statistics
    spec_path = workdir / f"ab_{n}.json"
    spec_path.write_text(json.dumps(
        {"name": "noop", "jobs": [{"name": f"noop_{i}", "command": "true"} for i in range(n)]}))
    env = clean_env(TORC_GRAPH_SQLITE_SYNCHRONOUS=synchronous)
    trees = {"this": env, "baseline": dict(env, PYTHONPATH=str(Path(baseline).absolute()))}
    got: dict[str, list[tuple[float, float]]] = {"this": [], "baseline": [], "xargs": []}
    for pair in range(pairs):
        for name in ("this", "baseline") if pair % 2 == 0 else ("baseline", "this"):
            tag = f"{name}_{n}_{pair}"
            seconds = _run_cli(["run", str(spec_path), "--database",
                                f"sqlite:///{workdir / f'ab_{tag}.db'}", "--output",
                                str(workdir / f"out_ab_{tag}"), "--num-cpus", str(PARALLELISM)],
                               trees[name])
            got[name].append((n / seconds, 1e3 * LAST_CPU[0] / n))
        rate = xargs_rate(n)
        got["xargs"].append((rate, 1e3 * LAST_CPU[0] / n))
        print(f"A/B N={n:,} pair {pair + 1}: " + ", ".join(
            f"{k} {v[-1][0]:,.0f}/s {v[-1][1]:.3f} ms CPU/job" for k, v in got.items()),
            flush=True)
    med = {k: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v))
           for k, v in got.items()}
    print(f"A/B N={n:,} medians of {pairs}: " + ", ".join(
        f"{k} {r:,.0f}/s {c:.3f} ms CPU/job" for k, (r, c) in med.items())
        + f"; CPU above xargs: this {med['this'][1] - med['xargs'][1]:.3f}, baseline "
        f"{med['baseline'][1] - med['xargs'][1]:.3f} ms/job", flush=True)


# ------------------------------------------------------------------------------------------------
# Figure 9: batched workers
# ------------------------------------------------------------------------------------------------


def _post(s: requests.Session, url: str, body: dict) -> dict:
    r = s.post(url, json=body, timeout=600)
    if r.status_code in (404, 405):
        raise EndpointMissing(f"POST {url} -> {r.status_code}")
    if not r.ok:
        raise RuntimeError(f"POST {url} -> {r.status_code}: {r.text[:300]}")
    return r.json()


def _batched_worker(url: str, wf: str, batch: int, out: mp.Queue) -> None:
    """Claim up to ``batch`` jobs, complete them all in one request that also claims the next
    batch, until the workflow is complete. Reports (completed keys, failures, error)."""
    s = requests.Session()
    completed: list[str] = []
    fails, error = 0, None
    try:
        node = _post(s, f"{url}/workflows/{wf}/compute_nodes", {
            "hostname": "bench", "pid": os.getpid(), "start_time": str(dt.datetime.now()),
            "is_active": True,
            "resources": {"num_cpus": batch, "memory_gb": 64.0, "num_gpus": 0, "num_nodes": 1}})
        claim = {"resources": {"num_cpus": batch, "memory_gb": 64.0, "num_gpus": 0,
                               "num_nodes": 1, "time_limit": None},
                 "scheduler_config_id": "", "limit": batch,
                 # What the runners send (the workflow's default prepare_jobs_sort_method):
                 # the claim walks the claim-order index. "none" (insertion order) makes
                 # SQLite sort every ready job per claim.
                 "sort_method": "gpus_runtime_memory",
                 "wait_seconds": 1}
        got = _post(s, f"{url}/workflows/{wf}/claim_jobs",
                    {"compute_node_key": node["_key"], **claim})
        while True:
            jobs = got["jobs"]
            if not jobs:
                if got.get("is_complete") or got.get("is_canceled"):
                    break
                got = _post(s, f"{url}/workflows/{wf}/claim_jobs",
                            {"compute_node_key": node["_key"], **claim})
                continue
            now = dt.datetime.now().isoformat()
            body = {"compute_node_key": node["_key"], "run_id": got["run_id"], "claim": claim,
                    "completions": [{
                        "job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
                        "status": "done", "cause": "exit",
                        "result": {"return_code": 0, "exec_time_minutes": 0.0,
                                   "completion_time": now},
                        "process_stats": None} for j in jobs]}
            answer = _post(s, f"{url}/workflows/{wf}/complete_jobs", body)
            for item in answer["items"]:
                if item["outcome"] == "completed":
                    completed.append(item["job_key"])
                else:
                    fails += 1
            if answer.get("is_complete") and not (answer.get("claimed") or {}).get("jobs"):
                break
            got = answer["claimed"] or {"jobs": [], "is_complete": answer.get("is_complete")}
    except EndpointMissing as exc:
        error = f"missing endpoint: {exc}"
    except Exception as exc:  # noqa: BLE001 - a benchmark reports failures, it does not hide them
        fails += 1
        error = repr(exc)
    out.put((completed, fails, error))


def run_processes(target, args: tuple, count: int) -> tuple[list, float]:
    """Run ``target(*args, queue)`` in ``count`` processes; return what each put on the queue
    and the seconds from the first start to the last report."""
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=target, args=(*args, out)) for _ in range(count)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return results, elapsed


def batched_throughput(api, n: int, workers: int, batch: int, make_workflow) -> dict:
    """W processes drain a workflow of ``n`` ready no-op jobs through claim_jobs/complete_jobs.
    Raises EndpointMissing if the server has no batched execution API."""
    wf = make_workflow(api, n, f"batched-{workers}")
    results, elapsed = run_processes(_batched_worker, (api.url, wf, batch), workers)
    errors = [r[2] for r in results if r[2]]
    if any(e.startswith("missing endpoint") for e in errors):
        api.call("DELETE", f"/workflows/{wf}")
        raise EndpointMissing(errors[0])
    keys = [k for r in results for k in r[0]]
    done_in_db = api.call("GET", f"/workflows/{wf}/jobs", status="done", limit=1)["total_count"]
    api.call("DELETE", f"/workflows/{wf}")
    return {"per_s": len(keys) / elapsed, "completed": len(keys), "distinct": len(set(keys)),
            "failures": sum(r[1] for r in results), "done_in_db": done_in_db, "errors": errors}


# ------------------------------------------------------------------------------------------------
# Figure 10: peers
# ------------------------------------------------------------------------------------------------


def _true(_i: int) -> int:
    return subprocess.run(["true"]).returncode


def dask_rate(n: int) -> float | None:
    """No-op jobs/s on Dask distributed (LocalCluster, 2 workers × 1 thread); None if Dask is
    not installed."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=PARALLELISM, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.submit(_true, -1).result()  # workers up and warm
        t0 = time.perf_counter()
        codes = client.gather(client.map(_true, range(n)))
        seconds = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError("a Dask task failed")
    return n / seconds



# ------------------------------------------------------------------------------------------------
# One command for figures 4 and 10
# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python scripts/bench_execution.py --jobs 2000 20000 --peers``: figure 4 at every N
    (embedded and served, ratios to xargs in the same run, per-job cost growth) and, with
    ``--peers``, figure 10 (Dask, with its own xargs baseline)."""
    import argparse
    import sys
    import tempfile

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--jobs", type=int, nargs="+", default=[2_000, 20_000])
    p.add_argument("--peers", action="store_true", help="figure 10: Dask (if installed)")
    p.add_argument("--peer-jobs", type=int, default=2_000)
    p.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    p.add_argument("--server-workers", type=int, default=SETTINGS_DEFAULTS["workers"],
                   help="gunicorn workers (default: serve's default)")
    p.add_argument("--baseline", metavar="TREE",
                   help="also time the embedded run of this source tree (e.g. a `git archive` "
                        "of the base commit), right after this one's: a same-run before/after")
    p.add_argument("--ab-pairs", type=int, default=0, metavar="K",
                   help="with --baseline: only K alternating embedded runs of both trees at "
                        "every N (and xargs), with medians")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="torc_graph_bench_e2e_"))
    print(f"load before {os.getloadavg()}, synchronous={args.synchronous}", file=sys.stderr)
    if args.ab_pairs:
        if not args.baseline:
            p.error("--ab-pairs needs --baseline")
        for n in args.jobs:
            embedded_ab(n, workdir, args.synchronous, args.baseline, args.ab_pairs)
        print(f"load after {os.getloadavg()}", file=sys.stderr)
        return 0
    cost: dict[str, dict[int, float]] = {"embedded": {}, "server": {}}
    for n in args.jobs:
        e = end_to_end(n, workdir, args.synchronous, args.server_workers, args.baseline)
        for mode in ("embedded", "server"):
            rate = e[f"{mode}_per_s"]
            cost[mode][n] = 1 / rate
            print(f"figure 4: N={n:,} {mode}: {rate:,.1f} jobs/s, xargs {e['xargs_per_s']:,.1f}"
                  f"/s, ratio {rate / e['xargs_per_s']:.3f}", flush=True)
        print(f"figure 4: N={n:,} CPU per job (user+sys, incl. the jobs): embedded run "
              f"{e['embedded_cpu_ms']:.3f} ms (create + run), xargs {e['xargs_cpu_ms']:.3f} ms",
              flush=True)
        if "baseline_per_s" in e:
            print(f"figure 4: N={n:,} embedded, baseline tree: {e['baseline_per_s']:,.1f} jobs/s"
                  f" (ratio {e['baseline_per_s'] / e['xargs_per_s']:.3f}), CPU per job "
                  f"{e['baseline_cpu_ms']:.3f} ms; this tree / baseline: rate "
                  f"{e['embedded_per_s'] / e['baseline_per_s']:.3f}x, CPU above xargs "
                  f"{(e['embedded_cpu_ms'] - e['xargs_cpu_ms']):.3f} vs "
                  f"{(e['baseline_cpu_ms'] - e['xargs_cpu_ms']):.3f} ms", flush=True)
    if len(args.jobs) > 1:
        lo, hi = min(args.jobs), max(args.jobs)
        for mode, c in cost.items():
            print(f"figure 4: per-job cost growth {mode} {lo:,} -> {hi:,}: "
                  f"{c[hi] / c[lo]:.3f}x ({1e3 * c[lo]:.3f} -> {1e3 * c[hi]:.3f} ms/job)")
    if args.peers:
        rate = dask_rate(args.peer_jobs)
        if rate is None:
            print("figure 10: Dask not installed")
        else:
            xargs = xargs_rate(args.peer_jobs)
            print(f"figure 10: Dask LocalCluster 2x1, N={args.peer_jobs:,}: {rate:,.1f} jobs/s, "
                  f"xargs {xargs:,.1f}/s, ratio {rate / xargs:.3f}")
    print(f"load after {os.getloadavg()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
