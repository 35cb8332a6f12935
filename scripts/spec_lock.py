#!/usr/bin/env python3
"""How long a streamed specification creation holds the SQLite write lock per transaction.

Creates one N-job specification (scripts/spec_memory.py's shape) through
``torc_graph.engine.staging.create`` on a fresh SQLite file, once per chunk size, timing every
outermost ``store.transaction`` (the write lock is held from its BEGIN IMMEDIATE to its COMMIT):

    python scripts/spec_lock.py --jobs 100000 --chunks 2500 10000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from spec_memory import write_spec  # noqa: E402

from torc_graph.engine import staging  # noqa: E402
from torc_graph.store import open_store  # noqa: E402


def measure(spec: Path, tmp: Path, chunk: int) -> dict:
    db = tmp / f"lock-{chunk}.db"
    store = open_store(f"sqlite:///{db}")
    store.info()
    held: list[float] = []
    real = store.transaction

    @contextlib.contextmanager
    def timed(wf=None):
        outer = not store._db.in_transaction
        t = time.perf_counter()
        with real(wf):
            yield
        if outer:
            held.append(time.perf_counter() - t)
    store.transaction = timed
    staging.CHUNK = chunk
    body = tmp / "body.json"
    shutil.copy(spec, body)
    cpu, t = time.process_time(), time.perf_counter()
    staging.create(store, staging.SpooledSpec(str(body), None))
    result = {"chunk": chunk, "seconds": round(time.perf_counter() - t, 1),
              "cpu_s": round(time.process_time() - cpu, 1), "transactions": len(held),
              "held_median_s": round(statistics.median(held), 3),
              "held_max_s": round(max(held), 3)}
    store.close()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--chunks", type=int, nargs="+", default=[2_500, 10_000])
    args = ap.parse_args(argv)
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        write_spec(spec, args.jobs)
        for chunk in args.chunks:
            print(json.dumps({"jobs": args.jobs, **measure(spec, Path(tmp), chunk)}), flush=True)
    print(json.dumps({"load": os.getloadavg()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
