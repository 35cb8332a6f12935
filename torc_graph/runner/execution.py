"""The runner's side of the execution API: claim, complete, heartbeat, release.

:class:`Execution` speaks torc_graph's batched execution API (docs/execution-model.md §4):
``claim_jobs`` claims *and* starts jobs in one request (long-polling when none is ready),
``complete_jobs`` reports a batch of finished attempts and claims the next jobs in the same
round trip, ``compute_nodes/{key}/heartbeat`` renews the lease of all the worker's jobs at once,
``release_jobs`` gives jobs back unfinished.

Against a server without that API (a torc v0.6.4 server; detected on the first call, by the
404 "Unknown path" / 405 answer) it falls back to torc's worker protocol with the same
responses: ``prepare_jobs_for_submission`` + ``start_job`` per job, ``complete_job`` per job
(process stats as separate documents), ``manage_status_change`` to ``ready`` for a release, no
heartbeat and no long poll (``long_polls`` is False: the runner polls).

Every method raises ApiError / ServerUnreachable from the client unchanged; the caller
(:mod:`.link`) decides about retries. Resending a completion is safe (idempotent per attempt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torc_graph.client import ApiError, Client, seg


def _is_missing_route(exc: ApiError) -> bool:
    return exc.status == 405 or (exc.status == 404 and "nknown path" in exc.message)


class Execution:
    """Execution calls of one worker (compute node ``node_key``) on workflow ``wf``."""

    def __init__(self, client: Client, wf: str, run_id: int):
        self.client = client
        self.wf = str(wf)
        self.run_id = int(run_id)
        self.node_key: str = ""
        self._base = f"/workflows/{seg(self.wf)}"
        #: None until the first call tells whether the server has the batched API.
        self.batched: bool | None = None
        self._revs: dict[str, str] = {}  # torc protocol: job key -> _rev after start_job

    @property
    def long_polls(self) -> bool:
        return self.batched is not False

    def _batched(self, call: Callable[[], Any]) -> Any:
        """``call()`` (a batched-API client call); None if the server lacks that API (then
        remembered)."""
        if self.batched is False:
            return None
        try:
            resp = call()
        except ApiError as exc:
            if self.batched is None and _is_missing_route(exc):
                self.batched = False
                return None
            raise
        self.batched = True
        return resp

    # ------------------------------------------------------------------ the four calls

    def claim(self, claim: dict[str, Any]) -> dict[str, Any]:
        """Claim and start jobs for ``claim`` (a ``claim_jobs`` body without the node).
        Returns the ``claim_jobs`` response."""
        resp = self._batched(lambda: self.client.claim_jobs(
            self.wf, self.node_key, claim["resources"], limit=claim["limit"],
            sort_method=claim.get("sort_method"),
            scheduler_config_id=claim.get("scheduler_config_id"),
            wait_seconds=claim.get("wait_seconds", 0)))
        if resp is None:
            return self._legacy_claim(claim)
        return resp

    def complete(self, completions: list[dict[str, Any]],
                 claim: dict[str, Any] | None = None) -> dict[str, Any]:
        """Report finished attempts (``complete_jobs`` items) and, with ``claim``, claim the
        next jobs in the same request. Returns the ``complete_jobs`` response."""
        resp = self._batched(lambda: self.client.complete_jobs(
            self.wf, self.node_key, self.run_id, completions, claim=claim))
        if resp is None:
            resp = {"items": [self._legacy_complete(item) for item in completions],
                    "claimed": self._legacy_claim(claim) if claim is not None else None}
            resp["is_complete"] = bool((resp["claimed"] or {}).get("is_complete"))
        for item in resp.get("items", []):
            self._revs.pop(str(item.get("job_key")), None)
        return resp

    def heartbeat(self, job_keys: list[str]) -> dict[str, Any] | None:
        """Renew the lease of this node's jobs (``job_keys``: those it believes it holds; the
        answer's ``lost_jobs`` are those of them it no longer holds); None against a torc
        v0.6.4 server. Raises ApiError 409 when the node's lease has already expired."""
        return self._batched(lambda: self.client.heartbeat(self.wf, self.node_key,
                                                           job_keys=job_keys))

    def release(self, releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give jobs back unfinished (``release_jobs`` items); returns the items' outcomes."""
        resp = self._batched(lambda: self.client.release_jobs(self.wf, self.node_key, releases))
        if resp is not None:
            return resp.get("items", [])
        items = []
        for rel in releases:
            key = rel["job_key"]
            path = (f"{self._base}/jobs/{seg(key)}/manage_status_change/ready/"
                    f"{seg(self._revs.pop(key, ''))}/{self.run_id}")
            try:
                self.client.put(path)
                items.append({"job_key": key, "outcome": "released", "code": 200})
            except ApiError as exc:
                items.append({"job_key": key, "outcome": "stale", "code": exc.status,
                              "message": exc.message})
        return items

    def held_jobs(self) -> list[dict[str, Any]]:
        """The started jobs whose lease this node holds (to find the jobs of a claim whose
        answer was lost)."""
        held = []
        for status in ("submitted", "submitted_pending"):
            for job in self.client.iter_items(f"{self._base}/jobs", status=status):
                if str((job.get("execution") or {}).get("compute_node")) == self.node_key:
                    held.append(job)
        return held

    # ------------------------------------------------------------------ torc v0.6.4 protocol

    def _legacy_claim(self, claim: dict[str, Any]) -> dict[str, Any]:
        resources = dict(claim["resources"])
        resources.setdefault("scheduler_config_id", claim.get("scheduler_config_id", ""))
        ready = self.client.prepare_jobs_for_submission(
            self.wf, resources, sort_method=claim.get("sort_method"), limit=claim.get("limit"))
        jobs = []
        for job in ready:
            try:
                started = self.client.start_job(self.wf, job["_key"], job["_rev"], self.run_id,
                                                self.node_key)
            except ApiError:
                continue  # changed since the claim (cancel, reset): not ours to run
            self._revs[started["_key"]] = started["_rev"]
            jobs.append(started)
        resp: dict[str, Any] = {"jobs": jobs, "run_id": self.run_id, "is_complete": False,
                                "is_canceled": False}
        if not jobs:
            resp.update(self.client.is_complete(self.wf))
        return resp

    def _legacy_complete(self, item: dict[str, Any]) -> dict[str, Any]:
        key = item["job_key"]
        status = item["status"]
        rev = self._revs.get(key, "")
        out = {"job_key": key, "attempt_id": item.get("attempt_id"), "recovery_script": None}
        for attempt in range(2):
            result = {"job_key": key, "run_id": self.run_id, "status": status,
                      **item["result"]}
            try:
                job = self.client.complete_job(self.wf, key, status, rev, self.run_id,
                                               self.node_key, result)
            except ApiError as exc:
                if exc.status == 409 and attempt == 0:
                    fresh = self.client.get_job(self.wf, key)
                    rev = fresh["_rev"]
                    if fresh.get("status") == "canceled":
                        status = "canceled"
                    continue
                return {**out, "outcome": "stale", "code": exc.status, "message": exc.message,
                        "status": status}
            if item.get("process_stats"):
                stats = self.client.add_document(self.wf, "job_process_stats",
                                                 item["process_stats"])
                self.client.add_edge(self.wf, "process_used", job["_id"], stats["_id"])
            return {**out, "outcome": "completed", "code": 200, "status": job.get("status")}
        return {**out, "outcome": "stale", "code": 409, "status": status}


def why_stuck(client: Client, wf: str, resources: Any) -> str | None:
    """None while some worker still runs jobs of workflow ``wf``; else why nothing can run on
    a worker with ``resources``."""
    def count(status: str) -> int:
        page = client.get(f"/workflows/{seg(wf)}/jobs", status=status, limit=1)
        return int(page.get("total_count", 0))

    if count("submitted") or count("submitted_pending"):
        return None
    ready = count("ready") + count("scheduled")
    if ready:
        return (f"{ready} ready job(s) need more resources than this worker has "
                f"({resources})")
    return "no job can run: the remaining jobs are blocked or uninitialized"
