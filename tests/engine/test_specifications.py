"""Workflow specifications (behavior doc §4.21-§4.24) on a real SQLite store: creation from the
example and a diamond spec, every kind of bad spec leaving the database unchanged, set-based
writes (store calls independent of the job count), and reading specifications back."""

from __future__ import annotations

import copy

import pytest

from torc_graph import model, validation
from torc_graph.engine import specifications as specs
from torc_graph.engine import workflows
from torc_graph.errors import InvalidInput, NotFound, StoreError
from torc_graph.testing import CountingStore


def dump(store) -> dict:
    """Every document of every collection of every workflow."""
    out: dict = {}
    for coll in model.GlobalCollection:
        out[coll.value] = store.find(coll.value, None)
    for wf in out["workflows"]:
        for name in list(model.Collection) + list(model.Edge):
            out[f"{name.value}__{wf['_key']}"] = store.find(name.value, wf["_key"])
    return out


def create(store, spec):
    return specs.create_from_specification(store, spec)


def names_by_edge(store, wf, edge):
    """{(from name, to name)} of every edge of one type."""
    return {
        (h.edge["_from"].split("/")[0] + ":" + _name(store, h.edge["_from"]), h.vertex.get("name"))
        for h in store.neighbors(wf, edge, "out")
    }


def _name(store, doc_id):
    base, wf, key = model.split_id(doc_id)
    return store.get(base, wf, key).get("name")


def edge_pairs(store, wf, edge):
    out = set()
    for h in store.neighbors(wf, edge, "out"):
        out.add((_name(store, h.edge["_from"]), _name(store, h.edge["_to"])))
    return out


def diamond_spec():
    """preprocess → (work1, work2) → postprocess through files, plus user data, schedulers,
    a forward ``blocked_by`` reference, a job key and config overrides."""
    return {
        "name": "diamond",
        "user": "tester",
        "description": "a diamond",
        "files": [
            {"name": "inputs", "path": "inputs.json"},
            {"name": "f1", "path": "f1.json"},
            {"name": "f2", "path": "f2.json"},
            {"name": "f3", "path": "f3.json"},
            {"name": "f4", "path": "f4.json"},
            {"name": "inputs", "path": "inputs.json"},  # identical: de-duplicated
        ],
        "user_data": [
            {"name": "params", "data": {"alpha": 1}},
            {"name": "summary", "is_ephemeral": True},
        ],
        "resource_requirements": [
            {"name": "small", "num_cpus": 1, "memory": "1g", "runtime": "P0DT1H"},
            {"name": "large", "num_cpus": 8, "memory": "1.5 GB", "runtime": "PT2H30M"},
        ],
        "schedulers": {
            "slurm_schedulers": [{"name": "short", "account": "acct", "nodes": 1,
                                  "walltime": "04:00:00"}],
            "local_schedulers": [{"name": "local", "num_cpus": 4}],
        },
        "jobs": [
            {"name": "postprocess", "command": "post", "input_files": ["f3", "f4"],
             "input_user_data": ["summary"], "blocked_by": ["work1", "work2"],
             "resource_requirements": "small", "scheduler": "local_schedulers/local"},
            {"name": "preprocess", "command": "pre", "key": "pre-1",
             "input_files": ["inputs"], "output_files": ["f1", "f2"],
             "input_user_data": ["params"], "resource_requirements": "small",
             "scheduler": "slurm_schedulers/short",
             "schedule_compute_nodes": {"num_jobs": 1, "scheduler_id": "slurm_schedulers/short"}},
            {"name": "work1", "command": "w1", "input_files": ["f1"], "output_files": ["f3"],
             "resource_requirements": "large", "cancel_on_blocking_job_failure": False},
            {"name": "work2", "command": "w2", "input_files": ["f2"], "output_files": ["f4"],
             "output_user_data": ["summary"], "resource_requirements": "large",
             "supports_termination": True, "invocation_script": "bash run.sh"},
        ],
        "config": {"compute_node_resource_stats": {"process": True, "interval": 1},
                   "compute_node_wait_for_new_jobs_seconds": 30},
    }


# ----------------------------------------------------------------------------------------------
# Creating
# ----------------------------------------------------------------------------------------------


def test_example_spec_creates_documents_and_edges(store):
    wf = create(store, specs.get_workflow_specification_example())
    assert set(wf) >= {"_key", "_id", "_rev", "name", "user", "description", "is_archived",
                       "timestamp"}
    key = wf["_key"]
    assert [f["name"] for f in store.find("files", key)] == [
        "work_script", "postprocess_script", "f1", "f2", "f3"]
    assert [r["name"] for r in store.find("resource_requirements", key)] == ["small", "medium"]
    jobs = store.find("jobs", key)
    assert [j["name"] for j in jobs] == ["work", "postprocess"]
    assert all(j["status"] == "uninitialized" for j in jobs)
    assert jobs[0]["internal"] == {"memory_bytes": 0, "num_cpus": 0, "num_gpus": 0,
                                   "num_nodes": 0, "runtime_seconds": 0,
                                   "scheduler_config_id": "", "hash": 0}
    assert not any(f in jobs[0] for f in ("input_files", "output_files", "blocked_by"))
    assert edge_pairs(store, key, "needs") == {
        ("work", "work_script"), ("work", "f1"), ("postprocess", "postprocess_script"),
        ("postprocess", "f2")}
    assert edge_pairs(store, key, "produces") == {("work", "f2"), ("postprocess", "f3")}
    assert edge_pairs(store, key, "requires") == {("work", "medium"), ("postprocess", "small")}
    # The config is the default one.
    config = store.workflow_space(key).config
    assert config["compute_node_resource_stats"]["process"] is False
    assert config["compute_node_expiration_buffer_seconds"] == 120


def test_diamond_spec(store):
    wf = create(store, diamond_spec())
    key = wf["_key"]
    assert (wf["name"], wf["user"], wf["description"]) == ("diamond", "tester", "a diamond")
    # Identical file entries became one document; user data is kept as given.
    assert [f["name"] for f in store.find("files", key)] == ["inputs", "f1", "f2", "f3", "f4"]
    assert [u["name"] for u in store.find("user_data", key)] == ["params", "summary"]
    jobs = {j["name"]: j for j in store.find("jobs", key)}
    assert list(jobs) == ["postprocess", "preprocess", "work1", "work2"]
    assert jobs["preprocess"]["_key"] == "pre-1"  # a job's key is honored
    assert jobs["work1"]["cancel_on_blocking_job_failure"] is False
    assert jobs["work2"]["supports_termination"] is True
    assert jobs["work2"]["invocation_script"] == "bash run.sh"
    # blocked_by may name later jobs (the original only resolved earlier ones).
    assert edge_pairs(store, key, "blocks") == {("work1", "postprocess"), ("work2", "postprocess")}
    assert edge_pairs(store, key, "consumes") == {("postprocess", "summary"),
                                                  ("preprocess", "params")}
    assert edge_pairs(store, key, "stores") == {("work2", "summary")}
    assert edge_pairs(store, key, "scheduled_bys") == {("postprocess", "local"),
                                                       ("preprocess", "short")}
    slurm = store.find("slurm_schedulers", key)[0]
    # "<type>_schedulers/<name>" in schedule_compute_nodes is resolved to the scheduler's id.
    assert jobs["preprocess"]["schedule_compute_nodes"] == {
        "num_jobs": 1, "scheduler_id": slurm["_id"], "start_one_worker_per_node": False}
    # The spec config is merged into the default config (nested object replaced whole, with
    # its schema defaults).
    config = store.workflow_space(key).config
    assert config["compute_node_resource_stats"]["process"] is True
    assert config["compute_node_resource_stats"]["interval"] == 1
    assert config["compute_node_resource_stats"]["cpu"] is True
    assert config["compute_node_wait_for_new_jobs_seconds"] == 30
    assert config["compute_node_expiration_buffer_seconds"] == 120


def test_workflow_key_and_empty_spec(store):
    wf = create(store, {"key": "mywf1", "name": "empty"})
    assert wf["_key"] == "mywf1"
    assert store.find("jobs", "mywf1") == []
    with pytest.raises(InvalidInput, match="already exists"):
        create(store, {"key": "mywf1"})


def test_identical_entries_are_deduplicated_but_user_data_is_not(store):
    spec = {
        "files": [{"path": "a"}, {"path": "a"}, {"path": "b"}],
        "resource_requirements": [{"name": "r", "memory": "2g"}, {"name": "r", "memory": "2g"}],
        "schedulers": {"local_schedulers": [{"name": "l"}, {"name": "l"}]},
        "user_data": [{"data": {"x": 1}}, {"data": {"x": 1}}],
        "jobs": [{"name": "j", "command": "c", "resource_requirements": "r",
                  "scheduler": "local_schedulers/l", "input_files": [], "blocked_by": []}],
    }
    key = create(store, spec)["_key"]
    assert len(store.find("files", key)) == 2
    assert len(store.find("resource_requirements", key)) == 1
    assert len(store.find("local_schedulers", key)) == 1
    assert len(store.find("user_data", key)) == 2


def test_default_resource_requirements_name_means_no_edge(store):
    key = create(store, {"jobs": [{"name": "j", "command": "c",
                                   "resource_requirements": "default"}]})["_key"]
    assert store.find("requires", key) == []


def test_repeated_reference_is_one_edge(store):
    key = create(store, {"files": [{"name": "f", "path": "f"}],
                         "jobs": [{"name": "j", "command": "c",
                                   "input_files": ["f", "f"]}]})["_key"]
    assert len(store.find("needs", key)) == 1


# ----------------------------------------------------------------------------------------------
# Bad specifications: 400 naming the entry, nothing created
# ----------------------------------------------------------------------------------------------


def _with(path_value_pairs):
    spec = diamond_spec()
    for path, value in path_value_pairs:
        target = spec
        for p in path[:-1]:
            target = target[p]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return spec


_DELETE = object()

BAD_SPECS = [
    ("unknown input file", [(("jobs", 0, "input_files"), ["f3", "f9"])],
     'jobs[0] ("postprocess"): input_files references unknown file "f9"'),
    ("unknown output file", [(("jobs", 2, "output_files"), ["nope"])],
     'jobs[2] ("work1"): output_files references unknown file "nope"'),
    ("unknown input user data", [(("jobs", 1, "input_user_data"), ["ghost"])],
     'jobs[1] ("preprocess"): input_user_data references unknown user data "ghost"'),
    ("unknown output user data", [(("jobs", 3, "output_user_data"), ["ghost"])],
     'jobs[3] ("work2"): output_user_data references unknown user data "ghost"'),
    ("unknown resource requirements", [(("jobs", 2, "resource_requirements"), "huge")],
     'jobs[2] ("work1"): resource_requirements references unknown resource requirements "huge"'),
    ("unknown blocker", [(("jobs", 0, "blocked_by"), ["work1", "work9"])],
     'jobs[0] ("postprocess"): blocked_by references unknown job "work9"'),
    ("self block", [(("jobs", 2, "blocked_by"), ["work1"])],
     'jobs[2] ("work1"): blocked_by names the job itself'),
    ("cycle", [(("jobs", 2, "blocked_by"), ["postprocess"])],
     "blocked_by forms a cycle"),
    ("malformed scheduler", [(("jobs", 0, "scheduler"), "local")],
     'jobs[0] ("postprocess"): scheduler must be "<aws|local|slurm>_schedulers/<name>", '
     'got "local"'),
    ("wrong scheduler type", [(("jobs", 0, "scheduler"), "pbs_schedulers/local")],
     'scheduler must be "<aws|local|slurm>_schedulers/<name>"'),
    ("unknown scheduler", [(("jobs", 0, "scheduler"), "slurm_schedulers/long")],
     'jobs[0] ("postprocess"): scheduler references unknown slurm_scheduler "long"'),
    ("duplicate job name", [(("jobs", 3, "name"), "work1")],
     'jobs[3] ("work1"): duplicate name; jobs[2] has the same name "work1"'),
    ("duplicate file name", [(("files", 5), {"name": "f1", "path": "other.json"})],
     'files[5] ("f1"): duplicate name; files[1] has the same name "f1"'),
    ("duplicate rr name", [(("resource_requirements", 1, "name"), "small")],
     'resource_requirements[1] ("small"): duplicate name'),
    ("duplicate user data name", [(("user_data", 1, "name"), "params")],
     'user_data[1] ("params"): duplicate name'),
    ("duplicate scheduler name",
     [(("schedulers", "local_schedulers"), [{"name": "local"}, {"name": "local", "num_cpus": 2}])],
     'local_schedulers[1] ("local"): duplicate name'),
    ("bad memory", [(("resource_requirements", 1, "memory"), "1.5.2g")],
     "resource_requirements[1] (\"large\"): invalid memory value '1.5.2g'"),
    ("unanchored memory", [(("resource_requirements", 0, "memory"), "x10g")],
     "resource_requirements[0] (\"small\"): invalid memory value"),
    ("bad runtime", [(("resource_requirements", 0, "runtime"), "P1M")],
     'resource_requirements[0] ("small"): invalid duration'),
    ("duplicate job key", [(("jobs", 2, "key"), "pre-1")],
     'jobs[2] ("work1"): duplicate key "pre-1"'),
    ("invalid job key", [(("jobs", 2, "key"), "a/b")],
     'jobs[2] ("work1"): invalid key "a/b"'),
    ("invalid workflow key", [(("key",), "a b")], 'invalid workflow key "a b"'),
    ("schema: missing command", [(("jobs", 1, "command"), _DELETE)],
     "missing required field"),
    ("schema: unknown field", [(("jobs", 1, "colour"), "red")], "unknown field"),
]


@pytest.mark.parametrize("what,changes,message", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_400_and_creates_nothing(store, what, changes, message):
    create(store, {"name": "existing", "jobs": [{"name": "x", "command": "x"}]})
    before = dump(store)
    with pytest.raises(InvalidInput) as info:
        create(store, _with(changes))
    assert message in info.value.message
    assert info.value.status == 400
    assert dump(store) == before


class FailingStore:
    """Proxy that raises StoreError on the first call of ``method`` for ``collection``."""

    def __init__(self, store, method, collection):
        self._store, self._method, self._collection = store, method, collection

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name != self._method:
            return attr

        def fail(collection, *args, **kwargs):
            if collection == self._collection:
                raise StoreError("injected failure")
            return attr(collection, *args, **kwargs)

        return fail


@pytest.mark.parametrize("collection", ["files", "jobs", "blocks", "stores"])
def test_failure_after_the_workflow_was_created_leaves_nothing(store, collection):
    before = dump(store)
    with pytest.raises(StoreError):
        specs.add_workflow_specification(
            FailingStore(store, "insert_many", collection),
            validation.validate("workflow_specification", diamond_spec()))
    assert dump(store) == before


def test_the_owner_is_written_with_the_workflow_and_removed_with_a_failed_spec(store):
    owner = {"token": "9", "name": "editor"}
    spec = validation.validate("workflow_specification", diamond_spec())
    wf = specs.add_workflow_specification(store, spec, owner=owner)["_key"]
    assert store.get("workflow_owners", None, wf)["token"] == "9"
    before = dump(store)
    with pytest.raises(StoreError):
        specs.add_workflow_specification(FailingStore(store, "insert_many", "jobs"),
                                         copy.deepcopy(spec), owner=owner)
    assert dump(store) == before  # no workflow and no owner record left behind


def test_failing_config_update_leaves_nothing(store):
    before = dump(store)
    with pytest.raises(StoreError):
        specs.add_workflow_specification(
            FailingStore(store, "update", "workflow_configs"),
            validation.validate("workflow_specification", diamond_spec()))
    assert dump(store) == before


# ----------------------------------------------------------------------------------------------
# Set-based: the number of store calls does not depend on the number of jobs
# ----------------------------------------------------------------------------------------------


def chain_spec(n: int) -> dict:
    """n jobs; job i needs file i+1, produces file i, consumes user data i+1 and stores i, is
    blocked by the next-but-one job (forward references), and uses one of two resource
    requirements. Every dependency points from a later job to an earlier one: no cycle."""
    return {
        "files": [{"name": f"f{i}", "path": f"f{i}.txt"} for i in range(n + 1)],
        "user_data": [{"name": f"u{i}"} for i in range(n)],
        "resource_requirements": [{"name": "a"}, {"name": "b", "num_cpus": 2}],
        "schedulers": {"local_schedulers": [{"name": "l"}]},
        "jobs": [
            {"name": f"j{i}", "command": f"run {i}", "input_files": [f"f{i + 1}"],
             "output_files": [f"f{i}"], "output_user_data": [f"u{i}"],
             "input_user_data": [f"u{i + 1}"] if i + 1 < n else [],
             "blocked_by": [f"j{i + 2}"] if i + 2 < n and i % 3 == 0 else [],
             "resource_requirements": "ab"[i % 2], "scheduler": "local_schedulers/l"}
            for i in range(n)
        ],
    }


def calls_for(store, n):
    counting = CountingStore(store)
    spec = validation.validate("workflow_specification", chain_spec(n))
    wf = specs.add_workflow_specification(counting, spec)
    create_calls = dict(counting.calls)
    counting.calls.clear()
    got = specs.get_workflow_specification(counting, wf["_key"])
    return wf, got, create_calls, dict(counting.calls)


def test_store_calls_do_not_depend_on_the_number_of_jobs(store):
    _, small_spec, small_create, small_get = calls_for(store, 10)
    wf, big_spec, big_create, big_get = calls_for(store, 10_000)
    assert big_create == small_create
    assert big_get == small_get
    assert sum(big_create.values()) <= 30
    key = wf["_key"]
    assert store.count("jobs", key) == 10_000
    assert store.count("blocks", key) == len(range(0, 10_000 - 2, 3))
    assert store.count("needs", key) == store.count("produces", key) == 10_000
    assert len(big_spec["jobs"]) == 10_000
    j3 = big_spec["jobs"][3]
    assert j3["blocked_by"] == ["j5"]  # a forward reference
    assert big_spec["jobs"][4]["blocked_by"] == []
    assert j3["input_files"] == ["f4"] and j3["output_files"] == ["f3"]
    assert j3["input_user_data"] == ["u4"] and j3["output_user_data"] == ["u3"]
    assert j3["resource_requirements"] == "b"
    assert j3["scheduler"] == "local_schedulers/l"


# ----------------------------------------------------------------------------------------------
# Reading back
# ----------------------------------------------------------------------------------------------


def test_get_workflow_specification(store):
    wf = create(store, diamond_spec())
    got = specs.get_workflow_specification(store, wf["_key"])
    assert (got["name"], got["user"], got["description"], got["is_archived"]) == (
        "diamond", "tester", "a diamond", False)
    assert got["config"]["_key"] and got["config"]["compute_node_resource_stats"]["process"]
    assert [f["name"] for f in got["files"]] == ["inputs", "f1", "f2", "f3", "f4"]
    assert all("_id" in f for f in got["files"])
    assert [r["name"] for r in got["resource_requirements"]] == ["small", "large"]
    assert [s["name"] for s in got["schedulers"]["slurm_schedulers"]] == ["short"]
    assert got["schedulers"]["aws_schedulers"] == []
    assert [u["name"] for u in got["user_data"]] == ["params", "summary"]
    jobs = {j["name"]: j for j in got["jobs"]}
    assert jobs["postprocess"] == {
        "name": "postprocess", "command": "post", "cancel_on_blocking_job_failure": True,
        "supports_termination": False, "blocked_by": ["work1", "work2"],
        "input_files": ["f3", "f4"], "output_files": [], "input_user_data": ["summary"],
        "output_user_data": [], "resource_requirements": "small",
        "scheduler": "local_schedulers/local",
    }
    assert jobs["preprocess"]["scheduler"] == "slurm_schedulers/short"
    assert jobs["preprocess"]["schedule_compute_nodes"]["num_jobs"] == 1
    assert jobs["work2"]["invocation_script"] == "bash run.sh"
    assert jobs["work2"]["output_user_data"] == ["summary"]


def test_spec_round_trip(store):
    """A spec read back (db keys removed, as the client's sanitize does) creates the same
    workflow again."""
    first = create(store, diamond_spec())
    got = specs.get_workflow_specification(store, first["_key"])
    for kind in ("files", "user_data", "resource_requirements"):
        got[kind] = [{k: v for k, v in d.items() if not k.startswith("_")} for d in got[kind]]
    got["schedulers"] = {k: [{f: v for f, v in d.items() if not f.startswith("_")} for d in docs]
                         for k, docs in got["schedulers"].items()}
    got["config"] = {k: v for k, v in got["config"].items() if not k.startswith("_")}
    for job in got["jobs"]:
        job.get("schedule_compute_nodes", {}).pop("scheduler_id", None)
        if "schedule_compute_nodes" in job:
            job["schedule_compute_nodes"]["scheduler_id"] = "slurm_schedulers/short"
    second = create(store, copy.deepcopy(got))
    again = specs.get_workflow_specification(store, second["_key"])["jobs"]
    original = specs.get_workflow_specification(store, first["_key"])["jobs"]
    for jobs in (again, original):
        for job in jobs:
            # The scheduler's id differs between the two workflows.
            job.get("schedule_compute_nodes", {}).pop("scheduler_id", None)
    assert again == original


def test_get_workflow_specification_missing(store):
    with pytest.raises(NotFound):
        specs.get_workflow_specification(store, "404")


def test_job_specifications_list_and_get(store):
    key = create(store, diamond_spec())["_key"]
    everything = specs.list_job_specifications(store, key)
    assert everything["count"] == everything["total_count"] == 4
    assert everything["has_more"] is False
    assert [j["name"] for j in everything["items"]] == [
        "postprocess", "preprocess", "work1", "work2"]
    page = specs.list_job_specifications(store, key, skip=1, limit=2)
    assert [j["name"] for j in page["items"]] == ["preprocess", "work1"]
    assert (page["skip"], page["count"], page["total_count"], page["has_more"]) == (1, 2, 4, True)
    assert page["items"] == everything["items"][1:3]
    one = specs.get_job_specification(store, key, "pre-1")
    assert one == everything["items"][1]
    assert one["output_files"] == ["f1", "f2"]
    with pytest.raises(NotFound):
        specs.get_job_specification(store, key, "nope")
    with pytest.raises(NotFound):
        specs.list_job_specifications(store, "nope")


def test_job_specifications_of_jobs_added_without_relations(store):
    key = workflows.create_workflow(store, {"user": "u"})["_key"]
    assert specs.list_job_specifications(store, key)["items"] == []
    store.insert("jobs", key, {"name": "bare", "command": "c", "status": "uninitialized"})
    (job,) = specs.list_job_specifications(store, key)["items"]
    assert job["resource_requirements"] == "default"
    assert job["scheduler"] == ""
    assert job["blocked_by"] == [] and job["input_files"] == []


def test_example_and_template():
    example = specs.get_workflow_specification_example()
    assert [f["name"] for f in example["files"]] == [
        "work_script", "postprocess_script", "f1", "f2", "f3"]
    assert example["resource_requirements"] == [
        {"name": "small", "num_cpus": 1, "memory": "10g", "runtime": "P0DT1H"},
        {"name": "medium", "num_cpus": 8, "memory": "30g", "runtime": "P0DT4H"},
    ]
    assert [(j["name"], j["input_files"], j["output_files"], j["resource_requirements"])
            for j in example["jobs"]] == [
        ("work", ["work_script", "f1"], ["f2"], "medium"),
        ("postprocess", ["postprocess_script", "f2"], ["f3"], "small"),
    ]
    template = specs.get_workflow_specification_template()
    assert template["config"] == validation.validate("workflow_config", {})
    assert template == {
        "name": "", "description": "", "user": "", "files": [], "jobs": [],
        "resource_requirements": [],
        "schedulers": {"aws_schedulers": [], "local_schedulers": [], "slurm_schedulers": []},
        "config": template["config"],
    }
    # Both are valid specifications.
    validation.validate("workflow_specification", example)
    validation.validate("workflow_specification", template)
