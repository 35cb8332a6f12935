"""The runner's conversation with the server: what to send when, and taking the answers.

:class:`Conversation` is the half of :class:`~.local.LocalRunner` that talks: each loop
iteration :meth:`~Conversation._talk` decides the round trips due (heartbeat, releases, queued
completions carrying the next claim, a claim alone, or a long poll when idle), hands the
non-waiting ones to the courier (:mod:`.courier`) and takes their answers
(:meth:`~Conversation._receive`): completions are acknowledged only then, claimed jobs go into
the prefetch queue (:mod:`.prefetch`). It is a mixin: the state it uses (slots, queue, prefetch,
courier, link, ...) is the runner's (see ``LocalRunner.__init__``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from torc_graph.runner.link import LinkDown
from torc_graph.runner.scripts import run_recovery_script

logger = logging.getLogger("torc_graph.runner")

#: Most completions in one ``complete_jobs`` request.
BATCH = 500
#: Longest a completion waits in the queue while other jobs keep the runner busy (seconds).
REPORT_DELAY = 0.1
#: Longest long poll of the embedded store (the signal handler cannot interrupt it).
EMBEDDED_LONG_POLL = 2.0


class Interrupted(Exception):
    """Raised by the signal handler to end a long poll."""


class Conversation:
    """The runner's round trips (see the module docstring); mixed into LocalRunner."""

    def _talk(self, now: float) -> bool:
        """The round trips due now (the courier is free): heartbeat, releases, completions
        (+ claim) or a claim, both handed to the courier, or a long poll. Returns True if a
        long poll came back empty. Raises LinkDown, LeaseLost, Interrupted."""
        assert self.slots is not None and self.execution is not None
        assert self.prefetch is not None
        if (self.slots.procs or self.prefetch) and self.heartbeat.due(now):
            held = list(self.slots.procs) + list(self.prefetch.keys())
            resp = self.heartbeat.beat(self.execution, self.link, held, now)
            for key in resp.get("lost_jobs") or []:
                self._drop_lost(str(key))
            if resp.get("is_canceled"):
                self._state["is_canceled"] = True
                return False
        if self.queue.releases:
            items = self.link.call(self.execution.release, list(self.queue.releases))
            self.queue.releases.clear()
            self.summary.released += sum(1 for i in items if i.get("code", 200) == 200)
        claim = self._claim_body() if self.prefetch.low() else None
        if self.queue.completions and (claim is not None or self._report_due(now)):
            # The claim rides along with completions that are due anyway (built only then).
            return self._flush(now, claim if claim is not None else self._claim_body())
        if claim is None:
            return False
        idle = not (self.slots.procs or self.prefetch or self.queue.completions)
        if not idle and now < self._next_claim:
            return False
        wait = self._long_poll_seconds() if idle and self.execution.long_polls else 0.0
        claim["wait_seconds"] = wait
        if wait == 0:
            self._send("claim", [], claim, now)
            return False
        self._long_polling = self.client.url is not None
        try:
            resp = self.link.call(self.execution.claim, claim)
        except (LinkDown, Interrupted):
            self._claim_uncertain = True
            raise
        finally:
            self._long_polling = False
        return not self._claimed(resp, claim, time.monotonic())

    def _flush(self, now: float, claim: dict[str, Any] | None, wait: bool = False) -> bool:
        """Send queued completions (with ``claim``) through the courier; ``wait``: for the
        answer, and handle it (see :meth:`_receive`)."""
        if claim is not None:
            claim["wait_seconds"] = 0
        self._send("complete", self.queue.take(BATCH), claim, now)
        return self._receive(block=True) if wait else False

    def _send(self, kind: str, batch: list[dict[str, Any]], claim: dict[str, Any] | None,
              now: float) -> None:
        """Hand one ``complete`` (``batch`` + ``claim``) or ``claim`` call to the courier."""
        assert self.courier is not None and self.execution is not None
        execution, link = self.execution, self.link
        self._sent = (kind, batch, claim, now)
        if kind == "complete":
            self.courier.send(lambda: link.call(execution.complete, batch, claim))
        else:
            self.courier.send(lambda: link.call(execution.claim, claim))

    def _receive(self, block: bool = False) -> bool:
        """Handle the answer of the courier's call, if it is in (``block``: wait for it):
        acknowledge the completions it carried, run recovery scripts, take the claimed jobs.
        Returns True if its claim came back empty. Raises what the call raised (LinkDown:
        nothing is acknowledged, the completions stay queued and are sent again)."""
        assert self.courier is not None and self.prefetch is not None
        outcome = self.courier.take(block)
        if outcome is None or self._sent is None:
            return False
        (kind, batch, claim, sent), self._sent = self._sent, None
        resp, exc = outcome
        if exc is not None:
            if claim is not None and isinstance(exc, LinkDown):
                self._claim_uncertain = True
            raise exc
        now = time.monotonic()
        self.prefetch.round_trip(now - sent)
        if kind == "claim":
            return not self._claimed(resp, claim or {}, now)
        self.queue.acknowledge(len(batch), now)
        for item in resp.get("items", []):
            self._acknowledged(item, batch)
        if resp.get("is_complete"):
            self._state["is_complete"] = True
        claimed = resp.get("claimed")
        if claimed is None:
            return False
        return not self._claimed(claimed, claim or {}, now)

    def _acknowledged(self, item: dict[str, Any], batch: list[dict[str, Any]]) -> None:
        """Count one answered completion; run the recovery script of a retried attempt."""
        outcome = item.get("outcome")
        if outcome == "stale":
            logger.warning("completion of job %s attempt %s rejected: %s", item.get("job_key"),
                           item.get("attempt_id"), item.get("message"))
            self.summary.report_errors += 1
            return
        if outcome == "retried":
            sent = next((c for c in batch if c["job_key"] == item.get("job_key")), None)
            rc = sent["result"]["return_code"] if sent else 0
            self.summary.retried_attempt(str(item.get("job_key")),
                                         sent["status"] if sent else "done", rc)
            script = item.get("recovery_script")
            if script:
                run_recovery_script(script, str(item["job_key"]), rc,
                                    int(item.get("attempt_id") or 1), self._base_env,
                                    self.options.cwd, self.output_dir)

    def _claimed(self, resp: dict[str, Any], claim: dict[str, Any], now: float) -> int:
        """Take a claim response: jobs into the prefetch queue, workflow state, timings."""
        assert self.prefetch is not None
        jobs = resp.get("jobs") or []
        self._state["is_complete"] = bool(resp.get("is_complete"))
        self._state["is_canceled"] = bool(resp.get("is_canceled"))
        if "needs_to_run_completion_script" in resp:  # torc v0.6.4 protocol: is_complete
            self._state["script"] = (self._state.get("script")
                                     or bool(resp["needs_to_run_completion_script"]))
        self.heartbeat.update(resp.get("heartbeat_seconds"), now)
        self.heartbeat.renewed(now)
        self.prefetch.extend(jobs)
        full = len(jobs) >= int(claim.get("limit") or 1)
        self._next_claim = now if full else now + self.options.poll_interval
        if self._claim_uncertain:
            self._claim_uncertain = False
            self._adopt_orphans()
        self._start_prefetched()
        return len(jobs)

    def _adopt_orphans(self) -> None:
        """After a claim whose answer was lost: run the jobs the server handed to this node
        that the runner does not know of."""
        assert self.slots is not None and self.execution is not None
        assert self.prefetch is not None
        known = set(self.slots.procs) | self.prefetch.keys()
        known |= {c["job_key"] for c in self.queue.completions}
        for job in self.link.call(self.execution.held_jobs):
            if job["_key"] not in known:
                logger.info("adopting job %s (claimed while the server's answer was lost)",
                            job["_key"])
                self.prefetch.extend([job])

    def _claim_body(self) -> dict[str, Any] | None:
        """The claim for the free resources plus the prefetch; None when nothing is wanted."""
        assert self.slots is not None and self.prefetch is not None
        if (self._stop_signal is not None or self._state.get("is_canceled")
                or not self.walltime.can_claim()):
            return None
        return self.prefetch.claim(self.slots, self.walltime.time_limit())

    def _report_due(self, now: float) -> bool:
        assert self.slots is not None
        if not (self.slots.procs or self.prefetch) or len(self.queue) >= BATCH:
            return True
        return self.queue.since is not None and now - self.queue.since >= REPORT_DELAY

    def _long_poll_seconds(self) -> float:
        wait = float(self.options.long_poll_seconds)
        if self.client.url is None:
            wait = min(wait, EMBEDDED_LONG_POLL)
        wait = min(wait, max(self.walltime.claimable(), 0.0))
        return max(min(wait, 60.0), 0.0)

    def _next_wakeup(self) -> float:
        assert self.slots is not None and self.courier is not None
        now = time.monotonic()
        until = min(now + 60.0, self.walltime.next_event(now))
        if self._held:
            until = min(until, min(t for _, t in self._held))
        if self.courier.busy:  # nothing can be sent before its answer, which wakes the loop
            return max(until, now)
        if self.prefetch.low():  # else no claim is due, whatever _next_claim says
            until = min(until, self._next_claim)
        if self.link.is_down:
            until = min(until, self.link.retry_at)
        if self.queue.since is not None:
            until = min(until, self.queue.since + REPORT_DELAY)
        if self.queue.releases or (self.queue.completions and not self.slots.procs):
            until = now
        if self.slots.procs or self.prefetch:
            until = min(until, self.heartbeat.next_at)
        return max(until, now)
