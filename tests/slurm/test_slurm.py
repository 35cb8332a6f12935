"""Acceptance tests on a real Slurm (see conftest.py): packing, run --slurm, scancel loss,
walltime, cancel, sacct figures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands
from torc_graph.testing import clean_env, cli_argv

from .conftest import node_cpus, scheduler, spec, wait_for

MEMORY_JOB = (f"{sys.executable} -c \"import time; x = bytearray(80 * 2**20); "
              "x[::4096] = b'1' * len(x[::4096]); time.sleep(2.5)\"")


def per_allocation_cpus() -> int:
    return max(1, min(4, node_cpus() // 2))


@pytest.mark.slow
def test_sixty_jobs_with_dependencies_pack_into_two_allocations(slurm_env):
    """60 jobs (prep → 29 a_i → 29 b_i → final) in 2 allocations: every job runs once, both
    allocations run several jobs, each job's Slurm step figures are stored with its result."""
    jobs = [{"name": "prep", "command": MEMORY_JOB}]
    for i in range(29):
        jobs.append({"name": f"a{i}", "command": "sleep 0.3", "blocked_by": ["prep"]})
        jobs.append({"name": f"b{i}", "command": "true", "blocked_by": [f"a{i}"]})
    jobs.append({"name": "final", "command": "echo done",
                 "blocked_by": [f"b{i}" for i in range(29)]})
    assert len(jobs) == 60
    wf = slurm_env.create(spec("sixty", jobs, [scheduler("pack", cpus=per_allocation_cpus())]))
    ids = slurm_env.schedule(wf, "pack", 2)
    assert len(ids) == 2

    slurm_env.wait_complete(wf, timeout=150)
    slurm_env.wait_gone(ids)
    wait_for(lambda: all(a["status"] == "complete"
                         for a in alloc_mod.allocations(slurm_env.client, wf)),
             30, "both allocations to be marked complete")

    done = slurm_env.jobs(wf)
    assert {j["status"] for j in done} == {"done"}
    results = slurm_env.results(wf)
    assert sorted(r["job_key"] for r in results) == sorted(j["_key"] for j in done)  # once each
    assert {r["return_code"] for r in results} == {0}
    ran = slurm_env.executed_by_allocation(wf)
    assert set(ran) == set(ids), ran  # both allocations ran jobs ...
    assert sum(len(keys) for keys in ran.values()) == 60
    assert all(len(keys) > 1 for keys in ran.values()), ran  # ... several each (packing)

    # sacct figures, per job step, with the result
    by_key = {j["_key"]: j["name"] for j in done}
    figures = {by_key[r["job_key"]]: r.get("slurm") for r in results}
    assert all(figures.values()), [n for n, f in figures.items() if not f]
    prep = figures["prep"]
    assert prep["state"] == "COMPLETED" and prep["exit_code"] == 0
    assert prep["slurm_job_id"] in ids and prep["step_id"].isdigit() and prep["node"]
    assert prep["elapsed_seconds"] >= 2
    assert prep["max_rss_bytes"] >= 60 * 2**20
    steps = {(f["slurm_job_id"], f["step_id"]) for f in figures.values()}
    assert len(steps) == 60  # one step per job

    # torc's scheduling documents and events
    submit_events = [e for e in slurm_env.events(wf, category="scheduler")
                     if e.get("type") == "submit"]
    assert submit_events and submit_events[0]["job_ids"] == ids

    # `jobs show` lists the Slurm figures
    shown = slurm_env.cli("jobs", "show", wf, next(k for k, n in by_key.items() if n == "prep"))
    assert "MAX_RSS_BYTES" in shown.output and "COMPLETED" in shown.output


@pytest.mark.slow
def test_run_slurm_serves_the_embedded_store_and_exits_0(tmp_path):
    """`torc-graph run SPEC --slurm` with no --url: the allocations reach a server the run
    starts on the SQLite file; exit 0, nothing left in squeue."""
    spec_file = tmp_path / "wf.json"
    import json

    spec_file.write_text(json.dumps(spec("run-slurm", [
        {"name": "a", "command": "echo a"},
        {"name": "b", "command": "sleep 1", "blocked_by": ["a"]},
        {"name": "c", "command": "sleep 1", "blocked_by": ["a"]},
        {"name": "d", "command": "echo d", "blocked_by": ["b", "c"]},
    ], [scheduler("one", cpus=per_allocation_cpus())])))
    proc = subprocess.run(cli_argv("run", str(spec_file), "--slurm", "--num-allocations", "2",
                                   "--no-progress"),
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 succeeded, 0 not successful" in proc.stdout
    assert "Serving sqlite:///" in proc.stderr
    allocations = proc.stderr.split("Slurm allocations: ")[1].split()[0:2]
    ids = [a.strip(",") for a in allocations]
    queue = commands.queue(ids)
    assert all(e.state in commands.FINISHED_STATES for e in queue.values()), queue
    # the workers talked HTTP: their compute nodes name their allocations
    from torc_graph.client import Client

    with Client(database=f"sqlite:///{tmp_path / 'torc_graph.db'}") as client:
        [workflow] = list(client.iter_items("/workflows"))
        nodes = list(client.iter_items(f"/workflows/{workflow['_key']}/compute_nodes"))
    assert nodes and {n["scheduler"]["slurm_job_id"] for n in nodes} <= set(ids)
    assert all(n["scheduler"]["hpc_type"] == "slurm" for n in nodes)


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["TERM", "KILL"])
def test_scancel_mid_run_loses_no_job(slurm_env, signal):
    """An allocation ends while its jobs run. scancel (SIGTERM): its worker gives the jobs back
    (interrupted) and submits a new allocation just in time. kill -9 of the worker (like a node
    failure): `workflows sync` finds the allocation ended and requeues the jobs it held, with
    an event saying why. Either way they run again in another allocation, and every job is
    done exactly once."""
    jobs = [{"name": f"j{i}", "command": "sleep 4"} for i in range(6)]
    wf = slurm_env.create(spec("scancel", jobs, [scheduler("s", cpus=per_allocation_cpus())]))
    [first] = slurm_env.schedule(wf, "s", 1)
    running = wait_for(lambda: slurm_env.jobs(wf, status="submitted"), 60,
                       "jobs to run in the first allocation")
    if signal == "TERM":
        commands.cancel([first])
    else:  # kill -9 of the worker: the allocation ends, Slurm kills its job steps
        [node] = [n for n in slurm_env.client.iter_items(f"/workflows/{wf}/compute_nodes")
                  if n["scheduler"]["slurm_job_id"] == first]
        os.kill(node["pid"], 9)
    slurm_env.wait_gone([first])
    slurm_env.cli("workflows", "sync", wf)  # reconcile: nothing may stay submitted
    keys = {j["_key"] for j in running}
    given_back = {r["job_key"] for r in slurm_env.results(wf) if r.get("cause") == "interrupted"}
    assert keys <= given_back  # the attempts ended without a result of their own
    if signal == "KILL":  # the reconcile said why; nobody was left to submit an allocation
        requeued = [e for e in slurm_env.events(wf, category="job")
                    if e.get("type") == "requeued"]
        assert keys <= {e["job_key"] for e in requeued}
        assert {(e["scheduler_id"], e["cause"]) for e in requeued} == {(first, "lost")}
        assert not slurm_env.jobs(wf, status="submitted")
        slurm_env.schedule(wf, "s", 1)

    slurm_env.wait_complete(wf, timeout=120)
    final = slurm_env.jobs(wf)
    assert {j["status"] for j in final} == {"done"}
    done_results = [r for r in slurm_env.results(wf) if r["status"] == "done"]
    assert sorted(r["job_key"] for r in done_results) == sorted(j["_key"] for j in final)
    assert {r["return_code"] for r in done_results} == {0}
    ran = slurm_env.executed_by_allocation(wf)
    elsewhere = set().union(*(keys for sid, keys in ran.items() if sid != first))
    assert {j["_key"] for j in running} <= elsewhere  # they ran again, in another allocation


@pytest.mark.slow
def test_job_longer_than_the_walltime_is_never_started(slurm_env):
    """A 1-minute allocation (buffer 10 s) runs the 10-s job, never the 2-minute one, ends by
    itself, and submits no futile allocation for it."""
    wf = slurm_env.create(spec("walltime-fit", [
        {"name": "short", "command": "true"},
        {"name": "long", "command": "true", "resource_requirements": "long"},
    ], [scheduler("minute", walltime="00:01:00")], buffer=10, runtime="PT10S", long="PT2M"))
    [alloc] = slurm_env.schedule(wf, "minute", 1)
    slurm_env.wait_gone([alloc], timeout=60)
    states = {j["name"]: j["status"] for j in slurm_env.jobs(wf)}
    assert states == {"short": "done", "long": "ready"}
    assert [r["job_key"] for r in slurm_env.results(wf)] == [
        next(j["_key"] for j in slurm_env.jobs(wf) if j["name"] == "short")]
    assert [a["scheduler_id"] for a in alloc_mod.allocations(slurm_env.client, wf)] == [alloc]
    state = wait_for(lambda: next((e.state for e in commands.accounting([alloc])
                                   if e.job_id == alloc), None), 10, "sacct")
    assert state == "COMPLETED"  # it ended by itself, not by its time limit


@pytest.mark.slow
def test_job_killed_at_the_walltime_is_terminated(slurm_env):
    """The allocation's time limit is cut while a job runs: the worker sees the new end,
    kills the job before Slurm does, and (no infrastructure retries left) the job is
    `terminated` with cause walltime."""
    body = spec("walltime-kill", [{"name": "endless", "command": "sleep 600"}],
                [scheduler("s", walltime="00:10:00")], buffer=5, runtime="PT5M")
    body["config"]["max_infra_retries"] = 0  # else a walltime kill is retried elsewhere
    wf = slurm_env.create(body)
    [alloc] = slurm_env.schedule(wf, "s", 1)
    wait_for(lambda: slurm_env.jobs(wf, status="submitted"), 60, "the job to start")
    subprocess.run(["scontrol", "update", f"JobId={alloc}", "TimeLimit=00:01:00"], check=True)
    slurm_env.wait_complete(wf, timeout=90)
    [job] = slurm_env.jobs(wf)
    assert job["status"] == "terminated"
    [result] = slurm_env.results(wf)
    assert result["status"] == "terminated" and result["return_code"] != 0
    assert result["cause"] == "walltime"


@pytest.mark.slow
def test_workflow_cancel_leaves_squeue_empty(slurm_env):
    """`workflows cancel` cancels the jobs and scancels every allocation (running and
    pending)."""
    jobs = [{"name": f"j{i}", "command": "sleep 300"} for i in range(2)]
    wf = slurm_env.create(spec("cancel", jobs, [scheduler("s", cpus=1)], runtime="PT5M"))
    ids = slurm_env.schedule(wf, "s", 2)
    running = wait_for(lambda: slurm_env.jobs(wf, status="submitted"), 60, "a job to start")
    result = slurm_env.cli("workflows", "cancel", wf)
    assert "Canceled Slurm allocation(s)" in result.output
    queue = commands.queue(ids)
    assert all(e.state in commands.FINISHED_STATES for e in queue.values()), queue
    left = [(a["scheduler_id"], a["status"]) for a in alloc_mod.allocations(slurm_env.client, wf)]
    assert all(status == "complete" for _, status in left), left  # none submitted after cancel
    status = {j["_key"]: j["status"] for j in slurm_env.jobs(wf)}
    assert {status[j["_key"]] for j in running} == {"canceled"}
    assert not {"submitted", "submitted_pending"} & set(status.values())  # torc: ready stays
    assert slurm_env.client.is_complete(wf)["is_canceled"]


@pytest.mark.slow
def test_torc_client_0_6_4_slurm_flow(slurm_env):
    """torc-client 0.6.4's own `hpc slurm add-config` / `schedule-nodes` (whose allocation runs
    torc's `hpc slurm run-jobs`) works against torc_graph on the real Slurm. torc's worker
    needs `--mem` (it reads SLURM_MEM_PER_NODE)."""
    torc = shutil.which("torc")
    if torc is None:
        pytest.skip("torc-client 0.6.4 (the `torc` command) is not installed")
    jobs = [{"name": f"j{i}", "command": "sleep 1"} for i in range(4)]
    wf = slurm_env.create(spec("torc-client", jobs, []))
    base = [torc, "-u", slurm_env.url, "-k", wf, "-n", "hpc", "slurm"]
    subprocess.run(base + ["add-config", "-N", "tc", "-a", "acct", "-w", "00:05:00", "-m", "2G",
                           "-e", "--cpus-per-task=2"], check=True, capture_output=True)
    [config] = slurm_env.client.iter_items(f"/workflows/{wf}/slurm_schedulers")
    subprocess.run(base + ["schedule-nodes", "-n", "1", "-s", config["_key"], "-o",
                           str(slurm_env.output), "-p", "1"], check=True, capture_output=True)
    [alloc] = alloc_mod.allocations(slurm_env.client, wf)
    assert alloc["status"] == "pending" and alloc["scheduler_id"].isdigit()
    slurm_env.wait_complete(wf, timeout=90)
    assert {j["status"] for j in slurm_env.jobs(wf)} == {"done"}
    assert {r["return_code"] for r in slurm_env.results(wf)} == {0}
    nodes = list(slurm_env.client.iter_items(f"/workflows/{wf}/compute_nodes"))
    assert [n["scheduler"].get("slurm_job_id") for n in nodes] == [alloc["scheduler_id"]]


@pytest.mark.slow
def test_allocation_credential_is_an_executor_token_of_its_workflow_only(slurm_env,
                                                                        monkeypatch):
    """`slurm schedule-nodes` against a server with authentication: the allocation gets an
    expiring executor token of ITS workflow in a 0600 file named by TORC_GRAPH_TOKEN_FILE; the
    token is in neither the batch script nor any worker argv (`ps`); with it, the workflow's
    jobs run, but another workflow cannot be read or changed (403)."""
    import psutil

    from torc_graph.client import ApiError, Client, seg

    wf = slurm_env.create(spec("mine", [{"name": "slow", "command": "sleep 6"}],
                               [scheduler("one")]))
    other = slurm_env.create(spec("other", [{"name": "x", "command": "echo x"}],
                                  [scheduler("one")]))
    admin_token = slurm_env.server.token
    [job_id] = slurm_env.schedule(wf, "one", 1)
    script = (slurm_env.output / f"torc_graph_allocation_{wf}.sh").read_text()
    assert "tg_" not in script and admin_token not in script
    token_file = script.split("export TORC_GRAPH_TOKEN_FILE=")[1].split("\n")[0]
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    token = open(token_file).read().strip()
    with slurm_env.server.client() as admin:
        doc = admin.get("/tokens")["items"][-1]
    assert (doc["role"], doc["workflow"]) == ("executor", wf) and doc["expires"]
    assert token.startswith(f"tg_{doc['_key']}_")

    wait_for(lambda: slurm_env.jobs(wf, status="submitted"), 60, "the job to start")
    workers = [p for p in psutil.process_iter(["cmdline"])
               if "run-jobs" in (p.info["cmdline"] or []) and str(slurm_env.output)
               in (p.info["cmdline"] or [])]
    assert workers
    tree = [q for p in workers for q in [p, *p.children(recursive=True)]]
    for proc in tree:
        argv = " ".join(proc.cmdline())
        assert token not in argv and admin_token not in argv and "tg_" not in argv, argv
    assert workers[0].environ().get("TORC_GRAPH_TOKEN_FILE") == token_file

    monkeypatch.setenv("TORC_GRAPH_TOKEN_FILE", token_file)
    monkeypatch.delenv("TORC_GRAPH_TOKEN", raising=False)
    with Client(slurm_env.server.base_url) as node:
        assert node.token == token
        assert node.get(f"/workflows/{seg(wf)}/jobs")["items"]
        for method, path, body in (
                ("get", f"/workflows/{seg(other)}/jobs", None),
                ("get", f"/workflows/{seg(other)}", None),
                ("post", f"/workflows/{seg(other)}/events", {"category": "x", "message": "m"}),
                ("post", f"/workflows/{seg(other)}/claim_jobs",
                 {"resources": {"num_cpus": 1, "memory_gb": 1.0}}),
                ("post", f"/workflows/{seg(wf)}/executor_tokens", {"expires_in": 60}),
                ("get", "/tokens", None)):
            with pytest.raises(ApiError) as err:
                getattr(node, method)(path, body) if body else getattr(node, method)(path)
            assert err.value.status == 403, (method, path, err.value)
        # an allocation sbatch refused: the executor may not delete its document, it ends it
        refused = node.add_document(wf, alloc_mod.ALLOCATIONS, {
            "scheduler_config_id": f"slurm_schedulers__{wf}/1", "status": "uninitialized"})
        alloc_mod._discard(node, wf, refused)
        assert node.get(f"/workflows/{seg(wf)}/{alloc_mod.ALLOCATIONS}/{refused['_key']}"
                        )["status"] == "complete"
    slurm_env.wait_complete(wf, 90)
    assert [j["status"] for j in slurm_env.jobs(wf)] == ["done"]
    assert [j["status"] for j in slurm_env.jobs(other)] != ["done"]


@pytest.mark.slow
def test_run_slurm_url_mints_and_revokes_the_allocations_token(slurm_env):
    """`run SPEC --slurm --url` against a server with authentication: the allocations' executor
    token is minted for the new workflow, works while the run lasts, and is revoked (and its
    file removed) when the run ends."""
    import json

    spec_file = slurm_env.dir / "wf.json"
    spec_file.write_text(json.dumps(spec("run-url", [{"name": "a", "command": "echo a"}],
                                         [scheduler("one")])))
    result = slurm_env.cli("run", str(spec_file), "--slurm", "--no-progress",
                           "--output", str(slurm_env.output))
    assert "1 succeeded, 0 not successful" in result.output
    with slurm_env.server.client() as admin:
        minted = [t for t in admin.get("/tokens")["items"] if t["role"] == "executor"]
    assert len(minted) == 1 and minted[0]["revoked"] and minted[0]["expires"]
    wf = minted[0]["workflow"]
    slurm_env.workflows.append(wf)
    nodes = list(slurm_env.client.iter_items(f"/workflows/{wf}/compute_nodes"))
    assert nodes and all(n["scheduler"]["hpc_type"] == "slurm" for n in nodes)
    assert not list(slurm_env.output.glob(".torc_graph_worker_token_*"))
