#!/usr/bin/env python3
"""Peak memory of a real server creating one large workflow specification.

For each size N: write a v0.6.4 specification of N jobs (job i blocked by job i - 10^4, so
N - 10^4 edges; 10 files, half the jobs reading one) to a file, start a fresh
``torc-graph serve`` with one worker (torc_graph.testing.LiveServer, auth on), read the
worker's peak RSS (VmHWM), POST the file once (the torc v0.6.4 client's call: one synchronous
POST of the whole specification, streamed from the file) and read VmHWM again. Prints one
JSON line per size: spec bytes, seconds, worker CPU seconds, peak RSS growth, bytes per job.

    python scripts/spec_memory.py --sizes 100000 1000000 --baseline 100000

``--cache-mib 2`` pins SQLite's page cache per connection at 2 MiB (about SQLite's default),
as the measurements before the setting ``sqlite_cache_mib`` (default 64) were made.

``--baseline`` sizes are also created through the server's in-memory path (the code path of
every POST before streamed creation; still used for bodies it cannot stream) in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from torc_graph.testing import LiveServer


def write_spec(path: Path, n: int, lag: int = 10_000, in_memory: bool = False) -> int:
    """Write the specification; ``in_memory``: with an escaped surrogate pair in its
    description, which sends it down the server's previous in-memory path (the baseline)."""
    with open(path, "w") as f:
        desc = "\\ud83d\\ude00" if in_memory else ""
        f.write('{"name": "big", "user": "bench", "description": "' + desc + '", "files": [')
        f.write(",".join(json.dumps({"name": f"f{k}", "path": f"data/f{k}"}) for k in range(10)))
        f.write('], "resource_requirements": [{"name": "small", "num_cpus": 1, '
                '"memory": "1g", "runtime": "P0DT1H"}], "jobs": [')
        for i in range(n):
            job = {"name": f"j{i}", "command": f"echo {i}", "resource_requirements": "small"}
            if i >= lag:
                job["blocked_by"] = [f"j{i - lag}"]
            if i % 2:
                job["input_files"] = [f"f{i % 10}"]
            f.write(("," if i else "") + json.dumps(job))
        f.write("]}")
    return path.stat().st_size


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def measure(n: int, tmp: Path, in_memory: bool = False, cache_mib: int | None = None) -> dict:
    spec = tmp / f"spec-{n}.json"
    size = write_spec(spec, n, in_memory=in_memory)
    db = tmp / f"m-{n}.db"
    env = {} if cache_mib is None else {"TORC_GRAPH_SQLITE_CACHE_MIB": str(cache_mib)}
    with LiveServer(f"sqlite:///{db}", workers=1, startup_timeout=120, env=env) as server:
        server.client().get("/workflows")  # the worker is warm (imports, connection)
        (pid,) = server.worker_pids()
        proc = psutil.Process(pid)
        before, cpu0 = vm_hwm(pid), proc.cpu_times()
        t0 = time.perf_counter()
        with open(spec, "rb") as body:
            resp = requests.post(server.url + "/workflow_specifications", data=body,
                                 headers={"Content-Type": "application/json"}, timeout=3600)
        seconds = time.perf_counter() - t0
        resp.raise_for_status()
        cpu1, after = proc.cpu_times(), vm_hwm(pid)
        wf = resp.json()["_key"]
        total = server.client().get(f"/workflows/{wf}/jobs", limit=1)["total_count"]
        assert total == n, (total, n)
    for p in tmp.glob(f"m-{n}.db*"):
        p.unlink()
    spec.unlink()
    growth = after - before
    return {"path": "in-memory" if in_memory else "streamed", "jobs": n, "spec_bytes": size,
            "seconds": round(seconds, 2),
            "worker_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
            "rss_before_mb": round(before / 2**20, 1), "rss_peak_mb": round(after / 2**20, 1),
            "growth_mb": round(growth / 2**20, 1), "growth_bytes_per_job": round(growth / n),
            "growth_per_spec_byte": round(growth / size, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--baseline", type=int, nargs="*", default=[100_000], metavar="N",
                    help="sizes also measured on the in-memory path (the previous server "
                         "code path), in the same run (default: 100000)")
    ap.add_argument("--cache-mib", type=int, default=None,
                    help="the server's setting sqlite_cache_mib (its page cache per connection "
                         "grows with the database, up to this; default: the setting's default)")
    args = ap.parse_args(argv)
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.baseline:
            print(json.dumps(measure(n, Path(tmp), True, args.cache_mib)), flush=True)
        for n in args.sizes:
            print(json.dumps(measure(n, Path(tmp), False, args.cache_mib)), flush=True)
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
