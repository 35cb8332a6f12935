"""Sizing of the bulk paths on ArangoDB, measured by running the real engine on a real SQLite
store behind a recorder that prices every store call in ArangoDB terms (queries and requests
the ArangoDB store issues for it, documents it touches, bytes it writes into the transaction).

The per-call costs are the ArangoDB store's (see torc_graph/store/arango.py): insert_many = a
key reservation + one insert query; derive_edges = a candidate query (+ reservation + insert);
iter_find inside a transaction = one keyset page per ``batch_size`` rows; a transaction = begin
+ commit. Bytes are the JSON text of the written documents plus the store's per-document charge
(``DOC_OVERHEAD``), the same accounting the store checks against its cap.

``pytest tests/store/test_arango_sizing.py -s`` prints the table used by docs/arango-at-scale.md
(figures at N jobs and extrapolated per job to 10^6).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import pytest

from torc_graph.engine import autotune, claims, initialize, specifications
from torc_graph.store import open_store
from torc_graph.store.arango import DOC_OVERHEAD
from torc_graph.store.base import GraphStore
from torc_graph.testing import CountingStore

CHAIN = 100
MIB = 2**20


def spec(n: int) -> dict:
    """N jobs in chains of 100 (``blocked_by`` the previous job), one resource requirement,
    one output file per chain head; process stats on (auto-tune)."""
    jobs = []
    for i in range(n):
        job = {"name": f"job{i}", "command": f"python run.py --index {i} --out out/{i}.h5",
               "resource_requirements": "small"}
        if i % CHAIN:
            job["blocked_by"] = [f"job{i - 1}"]
        else:
            job["output_files"] = [f"f{i}"]
        jobs.append(job)
    return {
        "name": "sizing",
        "config": {"compute_node_resource_stats": {"process": True}},
        "files": [{"name": f"f{i}", "path": f"out/{i}.h5"} for i in range(0, n, CHAIN)],
        "resource_requirements": [{"name": "small", "num_cpus": 1, "memory": "1g",
                                   "runtime": "PT10M"}],
        "jobs": jobs,
    }


class Pricing(CountingStore):
    """A counting store proxy that also prices every call as the ArangoDB store would."""

    def __init__(self, store):
        super().__init__(store)
        self.reset()

    def reset(self):
        self.calls: Counter[str] = Counter()
        self.queries = 0
        self.docs = 0
        self.bytes = 0
        self.tx_bytes_max = 0
        self._tx_bytes = 0
        self._depth = 0

    def _write(self, nbytes: int) -> None:
        self.bytes += nbytes
        if self._depth:
            self._tx_bytes += nbytes
            self.tx_bytes_max = max(self.tx_bytes_max, self._tx_bytes)
        else:
            self.tx_bytes_max = max(self.tx_bytes_max, nbytes)

    def _mean_size(self, collection, workflow) -> int:
        sample = self._store.find(collection, workflow, limit=200)
        return int(sum(len(json.dumps(d)) for d in sample) / max(1, len(sample)))

    def transaction(self, workflow=None):
        outer = self

        class Tx:
            def __enter__(self):
                if outer._depth == 0:
                    outer.queries += 2  # begin, commit
                    outer._tx_bytes = 0
                outer._depth += 1
                self.inner = outer._store.transaction(workflow)
                return self.inner.__enter__()

            def __exit__(self, *exc):
                outer._depth -= 1
                return self.inner.__exit__(*exc)

        return Tx()

    def bulk_transaction(self, workflow, operation="initialize_jobs", **args):
        """Priced as one transaction: the bytes it writes (chunked on ArangoDB) in total, plus
        the guard check as it begins and the guard clear as it ends (2 queries)."""
        self.queries += 2
        return self.transaction(workflow)

    def set_initial_job_state(self, workflow, state):
        """ArangoDB runs the protocol's generic version (a set-based update per pass): priced
        through this proxy, pass by pass (SQLite's own is one statement)."""
        self.calls["set_initial_job_state"] += 1
        GraphStore.set_initial_job_state(self, workflow, state)

    def __getattr__(self, name):
        attr = super().__getattr__(name)  # counts the call
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._price(name, args, kwargs, attr(*args, **kwargs))

    def _price(self, name, args, kwargs, result):
        if name == "insert_many" or name == "insert":
            docs = result if name == "insert_many" else [result]
            if docs:
                self.queries += 2
                self.docs += len(docs)
                self._write(sum(len(json.dumps(d)) + DOC_OVERHEAD + 20 for d in docs))
        elif name == "create_workflow":
            self.queries += 1 + 2 + 1  # reservation, begin/commit, insert query (+ DDL below)
            self.calls["ddl"] += 24 + 25 + 1
        elif name in ("update_many", "update_descendants"):
            n = result if isinstance(result, int) else len(result)
            self.queries += 1
            self.docs += n
            self._write(n * (self._mean_size("jobs", args[1] if name == "update_many" else args[0])
                             + DOC_OVERHEAD))
        elif name == "update":
            self.queries += 1
            self.docs += 1
            self._write(len(json.dumps(result)) + DOC_OVERHEAD)
        elif name == "derive_edges":
            self.queries += 1 + (2 if result else 0)
            self.docs += result
            self._write(result * (130 + DOC_OVERHEAD))
        elif name == "iter_find":
            return self._pages(result, kwargs.get("batch_size", 1000))
        elif name in ("find", "neighbors", "join", "descendants"):
            self.queries += 1
            self.docs += len(result)
        else:
            self.queries += 1
        return result

    def _pages(self, iterator, batch):
        n = 0
        for doc in iterator:
            n += 1
            yield doc
        self.queries += n // batch + 1
        self.docs += n


def measure(tmp_path, n: int) -> dict[str, dict]:
    store = open_store(f"sqlite:///{tmp_path / f'sizing{n}.db'}")
    priced = Pricing(store)
    rows = {}

    def run(label, fn):
        priced.reset()
        t0 = time.perf_counter()
        fn()
        rows[label] = {"calls": sum(v for k, v in priced.calls.items() if k != "ddl"),
                       "queries": priced.queries, "docs": priced.docs,
                       "tx_bytes": priced.tx_bytes_max, "sqlite_s": time.perf_counter() - t0}

    created = {}
    run("create spec", lambda: created.update(
        specifications.create_from_specification(priced, spec(n))))
    wf = created["_key"]
    run("initialize_jobs", lambda: initialize.initialize_jobs(priced, wf))
    res = {"num_cpus": 4, "memory_gb": 16, "num_gpus": 0, "num_nodes": 1, "time_limit": None,
           "scheduler_config_id": ""}
    run("claim (prepare_jobs_for_submission, 4 CPUs)",
        lambda: claims.prepare_jobs_for_submission(priced, wf, res, limit=10))
    store.update_many("jobs", wf, {"status": "ready"}, {"status": "done"})
    run("process_changed_job_inputs", lambda: initialize.process_changed_job_inputs(priced, wf))
    store.update_many("jobs", wf, None, {"status": "ready"})
    run("auto-tune enable", lambda: autotune.auto_tune_resource_requirements(priced, wf))
    store.close()
    return rows


@pytest.mark.slow
def test_bulk_paths_scale_linearly_and_claims_stay_constant(tmp_path):
    """Per-job bytes of the bulk paths do not grow with N (process_changed_job_inputs depends
    on how many jobs changed, not on N); a claim's cost does not depend on N; the table (printed with -s) feeds docs/arango-at-scale.md."""
    small, big = measure(tmp_path, 1000), measure(tmp_path, 4000)
    print(f"\n{'call':45} {'N':>6} {'store calls':>11} {'arango queries':>14} "
          f"{'docs':>8} {'tx MiB':>8} {'MiB/1e6 jobs':>12} {'sqlite s':>9}")
    for n, rows in ((1000, small), (4000, big)):
        for label, r in rows.items():
            per_million = r["tx_bytes"] / n * 1e6 / MIB
            print(f"{label:45} {n:>6} {r['calls']:>11} {r['queries']:>14} {r['docs']:>8} "
                  f"{r['tx_bytes'] / MIB:>8.2f} {per_million:>12.0f} {r['sqlite_s']:>9.3f}")
    for label in ("create spec", "initialize_jobs", "auto-tune enable"):
        a, b = small[label]["tx_bytes"] / 1000, big[label]["tx_bytes"] / 4000
        assert math.isclose(a, b, rel_tol=0.25), (label, a, b)
    claim = "claim (prepare_jobs_for_submission, 4 CPUs)"
    assert small[claim]["queries"] == big[claim]["queries"]
    assert big[claim]["docs"] <= 2 * small[claim]["docs"] + 10
