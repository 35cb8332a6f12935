"""The dashboard's data (engine/dashboard.py, engine/stage_index.py) on real SQLite files, and
the in-process served app's cookie rules: stages and their edges, counts, progress, failures,
running jobs, drill-down, the caches staying correct as the workflow changes, the stderr
tail's file checks, the store projection, the Secure cookie under HTTPS."""

from __future__ import annotations

import os
import time

import pytest
from falcon import testing

from torc_graph.api import auth
from torc_graph.app import create_app
from torc_graph.config import load_settings
from torc_graph.engine import dashboard, execution, jobs, stage_index, tokens
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.runner.process import stdio_paths
from torc_graph.store import open_store
from torc_graph.store.base import GraphStore
from torc_graph.testing import CountingStore, staged_workflow

HOST = {"Host": "127.0.0.1:8529"}


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'dash.db'}")
    yield s
    s.close()


@pytest.mark.parametrize("name, stage", [
    ("work_17", "work_*"), ("sim_a1_b2", "sim_*"), ("train_0.01", "train_*"),
    ("step3", "step*"), ("postprocess", "postprocess"), ("42", "*"), ("job-2a", "job-*"),
    ("x.v2", "x.*"), ("work_17_3", "work_*"), ("", ""), (None, ""),
])
def test_stage_of(name, stage):
    assert stage_index.stage_of(name) == stage


def test_stages_of_equals_stage_of_per_name():
    import random

    rng = random.Random(7)
    names = ["".join(rng.choice("ab_-.019\n") for _ in range(rng.randint(0, 10)))
             for _ in range(20000)] + [None, "x", "x1", "x12", "x_", "x_1"]
    assert stage_index.stages_of(names) == [stage_index.stage_of(n) for n in names]


def test_summary_of_a_large_workflow_is_aggregated_by_stage(store):
    wf = staged_workflow(store, 1000, finished=300, failed_every=7, running=5)
    s = dashboard.summary(store, wf)
    assert s["aggregated"] is True and s["total"] == 1000
    assert [st["stage"] for st in s["stages"]] == ["prep", "sim_*", "analyze_*", "report"]
    assert [st["total"] for st in s["stages"]] == [1, 499, 499, 1]
    assert sum(st["counts"]["failed"] for st in s["stages"]) == s["counts"]["failed"] == 300 // 7
    assert sum(n for k, n in s["counts"].items() if k != "failed") == 1000
    assert s["counts"]["done"] == 300 and s["counts"]["submitted"] == 5
    assert {(e["from"], e["to"]): e["count"] for e in s["stage_edges"]} == {
        ("prep", "sim_*"): 499, ("sim_*", "analyze_*"): 499, ("analyze_*", "report"): 499}
    progress = s["progress"]
    assert 0 < len(progress) <= dashboard.MAX_PROGRESS_POINTS
    assert progress[-1] == {"t": progress[-1]["t"], "done": 300 - 300 // 7, "failed": 300 // 7}
    assert all(a["t"] <= b["t"] and a["done"] <= b["done"] for a, b in zip(progress, progress[1:]))
    failures = s["failures"]
    assert len(failures) == 300 // 7 and all(f["return_code"] == 1 for f in failures)
    times = [f["completion_time"] for f in failures]
    assert times == sorted(times, reverse=True)  # newest first
    assert failures[0]["stderr_tail"] is None  # the node's output_dir does not exist
    assert s["running_total"] == 5 and len(s["running"]) == 5
    assert {r["hostname"] for r in s["running"]} == {"bench-node"}
    assert all(isinstance(r["start_time"], int) for r in s["running"])
    events = store.find("events", wf)
    assert s["last_event_id"] == events[-1]["_key"]
    assert s["is_complete"] is False


def test_small_workflows_show_each_job(store):
    wf = staged_workflow(store, 20, finished=3, failed_every=2)
    s = dashboard.summary(store, wf)
    assert s["aggregated"] is False and len(s["stages"]) == 20
    by_name = {st["name"]: st for st in s["stages"]}
    assert by_name["prep"]["stage"] == by_name["prep"]["key"]
    assert len(s["stage_edges"]) == 9 + 9 + 9
    sim0 = by_name["sim_0"]
    assert {"from": by_name["prep"]["stage"], "to": sim0["stage"], "count": 1} in s["stage_edges"]


def test_stage_drill_down_pages_and_filters(store):
    wf = staged_workflow(store, 1000, finished=300, failed_every=7)
    page = dashboard.stage_jobs(store, wf, "sim_*", skip=10, limit=20)
    assert page["total"] == 499 and len(page["items"]) == 20
    everything = dashboard.stage_jobs(store, wf, "sim_*", limit=1000)["items"]
    assert [i["key"] for i in page["items"]] == [i["key"] for i in everything[10:30]]
    failed = dashboard.stage_jobs(store, wf, "sim_*", status="failed", limit=1000)
    assert failed["total"] == len(failed["items"]) > 0
    assert all(i["return_code"] == 1 and i["status"] == "done" for i in failed["items"])
    ready = dashboard.stage_jobs(store, wf, "analyze_*", status="ready", limit=5)
    assert all(i["status"] == "ready" and i["name"].startswith("analyze_")
               for i in ready["items"])
    for kwargs in ({"skip": -1}, {"limit": 0}, {"limit": 1001}, {"status": "bogus"}):
        with pytest.raises(InvalidInput):
            dashboard.stage_jobs(store, wf, "sim_*", **kwargs)
    with pytest.raises(NotFound):
        dashboard.stage_jobs(store, wf, "nope_*")
    with pytest.raises(NotFound):
        dashboard.stage_jobs(store, "999999", "sim_*")


def _complete(store, wf: str, n: int, rc: int = 0, status: str = "done") -> None:
    node = store.find("compute_nodes", wf)[0]["_key"]
    res = {"num_cpus": 10**6, "memory_gb": 10.0**6}
    claimed = execution.claim_jobs(store, wf, {"compute_node_key": node, "resources": res,
                                               "limit": n})["jobs"]
    execution.complete_jobs(store, wf, {"compute_node_key": node, "run_id": 1, "completions": [
        {"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"], "status": status,
         "cause": "exit" if status == "done" else "timeout", "result": {"return_code": rc, "exec_time_minutes": 0.1,
                                     "completion_time": "2030-01-01T00:00:00"}}
        for j in claimed]})


def test_the_caches_follow_the_workflow(store, monkeypatch):
    wf = staged_workflow(store, 400, finished=50)
    first = dashboard.summary(store, wf)
    _complete(store, wf, 10, rc=2)  # new results: read incrementally
    counting = CountingStore(store)
    second = dashboard.summary(counting, wf)
    assert counting.calls["values"] == 1  # only the statuses: structure and results cached
    assert second["counts"]["done"] == first["counts"]["done"] + 10
    assert second["counts"]["failed"] == first["counts"]["failed"] + 10
    assert second["progress"][-1]["failed"] == 10
    # Results deleted: the result index notices and is rebuilt.
    store.delete_many("results", wf, {"return_code": 2})
    third = dashboard.summary(store, wf)
    assert third["counts"]["failed"] == 0 and third["progress"][-1]["failed"] == 0
    # New jobs: a new stage, without waiting for the TTL.
    jobs.add_jobs(store, wf, {"jobs": [{"name": "extra_1", "command": "true"}]})
    assert "extra_*" in [st["stage"] for st in dashboard.summary(store, wf)["stages"]]
    # A rename shows after the structure's TTL.
    key = store.find("jobs", wf, {"name": "report"})[0]["_key"]
    store.update("jobs", wf, key, {"name": "final"})
    monkeypatch.setattr(stage_index, "STRUCTURE_TTL", 0.0)
    stages = [st["stage"] for st in dashboard.summary(store, wf)["stages"]]
    assert "final" in stages and "report" not in stages


@pytest.mark.slow
def test_summary_store_calls_do_not_grow_with_the_workflow(store):
    small = staged_workflow(store, 400, finished=40, failed_every=3, running=3)
    large = staged_workflow(store, 8000, finished=800, failed_every=3, running=3)
    calls = []
    for wf in (small, large, large):
        counting = CountingStore(store)
        dashboard.summary(counting, wf)
        calls.append(counting.total)
    assert calls[0] == calls[1]  # cold
    assert calls[2] < calls[1]  # warm: the structure and the results come from the caches


def test_workflow_list_counts(store):
    a = staged_workflow(store, 50, finished=10, failed_every=5, name="a")
    b = staged_workflow(store, 30, name="b")
    items = dashboard.workflows(store)["items"]
    assert [i["key"] for i in items] == [b, a]  # newest first
    assert items[1]["counts"]["failed"] == 2 and items[1]["counts"]["done"] == 10
    assert items[1]["total"] == 50 and items[0]["counts"]["failed"] == 0
    assert items[1]["counts"] == {k: v for k, v in dashboard.summary(store, a)["counts"].items()}


def test_values_projection_matches_the_generic_version(store):
    wf = staged_workflow(store, 40, finished=10)
    for coll, fields in (("jobs", ("_key", "name", "status", "execution.attempt_id")),
                         ("results", ("job_key", "return_code", "completion_time")),
                         ("blocks", ("_from", "_to", "_key")), ("workflows", ("_key", "user"))):
        workflow = None if coll == "workflows" else wf
        native = store.values(coll, workflow, fields)
        assert native == GraphStore.values(store, coll, workflow, fields)
        assert len(native) == store.count(coll, workflow)
    assert store.values("jobs", wf, ("name",), {"status": "done"}) == \
        [(d["name"],) for d in store.find("jobs", wf, {"status": "done"})]
    with pytest.raises(InvalidInput):
        store.values("jobs", wf, ("name') FROM x --",))


def test_the_engine_and_the_runner_agree_on_stdio_paths(tmp_path):
    assert stdio_paths(tmp_path, "12", 3)[1] == \
        tmp_path / dashboard.JOB_STDIO_DIR / "12_3.e"


def test_stderr_tail_reads_only_plain_own_files(tmp_path):
    d = tmp_path / "out" / dashboard.JOB_STDIO_DIR
    d.mkdir(parents=True)
    (d / "1_1.e").write_bytes(b"x" * 5000 + b"the end\n")
    tail = dashboard._stderr_tail(str(tmp_path / "out"), "1", 1)
    assert len(tail) == dashboard.STDERR_TAIL_BYTES and tail.endswith("the end\n")
    secret = tmp_path / "secret"
    secret.write_text("token")
    (d / "2_1.e").symlink_to(secret)
    os.link(secret, d / "3_1.e")
    os.mkfifo(d / "4_1.e")
    (d / "5_1.e").mkdir()
    for key in ("2", "3", "4", "5", "6"):
        assert dashboard._stderr_tail(str(tmp_path / "out"), key, 1) is None, key
    assert dashboard._stderr_tail(str(tmp_path / "out"), "../1", 1) is None
    assert dashboard._stderr_tail(None, "1", 1) is None
    assert dashboard._stderr_tail(str(tmp_path / "out"), "1", "1") is None


def test_secure_cookie_under_https_and_public_routes(store, tmp_path):
    app = create_app(store, load_settings({}, dashboard_dir=str(tmp_path)), served=True)
    client = testing.TestClient(app, headers=HOST)
    token, _ = tokens.create(store, name="r", role="reader")
    resp = client.simulate_post("/dashboard/session", json={"token": token}, protocol="https")
    assert resp.status_code == 204 and "Secure" in resp.headers["set-cookie"]
    # The public routes answer without a credential (404: nothing built here), never 401.
    assert client.simulate_get("/dashboard").status_code == 404
    assert client.simulate_get("/dashboard/assets/x.js").status_code == 404
    assert client.simulate_get("/dashboard/session").status_code == 401  # its own answer
    assert auth.is_public("/dashboard") and auth.is_public("/dashboard/assets/a/b.js")
    assert not auth.is_public("/dashboard/workflows")
    assert not auth.is_public("/dashboard/summary")


def test_cookie_is_ignored_when_a_token_is_sent(store, tmp_path):
    client = testing.TestClient(create_app(store, load_settings({}), served=True), headers=HOST)
    reader, _ = tokens.create(store, name="r", role="reader")
    login = client.simulate_post("/dashboard/session", json={"token": reader})
    cookie = login.cookies["torc_graph_session"].value
    # A bad token with a good cookie: judged by the token.
    resp = client.simulate_get("/dashboard/workflows", headers={
        "Cookie": f"torc_graph_session={cookie}", "Authorization": "Bearer tg_1_bad"})
    assert resp.status_code == 401
    # An admin token with a reader's cookie may write; the reader's cookie adds nothing.
    admin, _ = tokens.create(store, name="a", role="admin")
    resp = client.simulate_post("/workflows", json={"user": "u"}, headers={
        "Cookie": f"torc_graph_session={cookie}", "Authorization": f"Bearer {admin}"})
    assert resp.status_code == 200


def test_sessions_are_stored_hashed_and_pruned(store):
    token, _ = tokens.create(store, name="r", role="reader")
    from torc_graph.engine import sessions
    old, _ = sessions.create(store, token, seconds=0.01)
    time.sleep(0.05)
    new, _ = sessions.create(store, token)  # prunes the expired one
    docs = store.find(sessions.SESSIONS, None)
    assert len(docs) == 1 and docs[0]["_key"] != new and new not in str(docs)
    assert sessions.verify(store, old) is None and sessions.verify(store, new)["name"] == "r"
    assert sessions.verify(store, "x" * 1000) is None and sessions.verify(store, "") is None
    sessions.delete(store, new)
    assert sessions.verify(store, new) is None



def test_terminated_jobs_are_listed_with_failures_but_not_counted_failed(store):
    wf = staged_workflow(store, 30, finished=1)  # prep done: the sims are ready
    _complete(store, wf, 2, rc=-15, status="terminated")
    s = dashboard.summary(store, wf)
    assert s["counts"]["terminated"] == 2 and s["counts"]["failed"] == 0
    assert {f["return_code"] for f in s["failures"]} == {-15} and len(s["failures"]) == 2
    assert s["progress"][-1] == {"t": s["progress"][-1]["t"], "done": 1, "failed": 2}
    assert dashboard.stage_jobs(store, wf, s["failures"][0]["key"], status="failed")["total"] == 0
    assert dashboard.stage_jobs(store, wf, s["failures"][0]["key"],
                                status="terminated")["total"] == 1


def test_routes_in_process_stage_names_in_urls_and_auth_off(store):
    wf = staged_workflow(store, 400, finished=20)
    client = testing.TestClient(create_app(store, load_settings({}, auth=False), served=True),
                                headers=HOST)
    assert client.simulate_post("/dashboard/session", json={"token": "x"}).status_code == 204
    assert client.simulate_get("/dashboard/session").json["role"] == "admin"
    for stage in ("sim_%2A", "sim_*"):
        page = client.simulate_get(f"/workflows/{wf}/dashboard/stages/{stage}/jobs",
                                   params={"limit": "3"})
        assert page.status_code == 200, page.text
        assert page.json["total"] == 199 and len(page.json["items"]) == 3
    summary = client.simulate_get(f"/workflows/{wf}/dashboard/summary").json
    assert summary["counts"]["done"] == 20
