"""DOT graphs (behavior doc §4.18): structure, status colors, and validity with hostile names,
checked by a DOT parser written here and by Graphviz ``dot`` itself when installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from torc_graph.engine import dot, specifications
from torc_graph.errors import InvalidInput, NotFound

HOSTILE = [
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "\\N is the node name escape",
    "multi\nline",
    "cr\r\nlf",
    "tab\there",
    "bell\x07char",
    "unicode ✓ ünïcødé 日本語",
    "semi;colon -> x [label=y]",
    "{braces} = <html>",
    "// not a comment",
    "digraph",
]


def expected_label(name: str) -> str:
    """What Graphviz displays for a name: line breaks normalized, other controls as spaces."""
    text = name.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(" " if (ord(c) < 0x20 and c != "\n") or c == "\x7f" else c for c in text)


# ----------------------------------------------------------------------------------------------
# A DOT parser for the subset the server emits (the grammar of graphviz.org/doc/info/lang.html)
# ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s+|(?P<q>"(?:[^"\\]|\\.|\\\n)*")|(?P<p>->|[{}\[\];,=])|(?P<w>[A-Za-z_][A-Za-z_0-9]*)',
                    re.S)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos] == "<":  # an HTML string: balanced <...>, kept verbatim
            depth, end = 0, pos
            while True:
                depth += {"<": 1, ">": -1}.get(text[end], 0)
                end += 1
                if depth == 0:
                    break
            tokens.append(("html", text[pos + 1:end - 1]))
            pos = end
            continue
        m = _TOKEN.match(text, pos)
        assert m, f"cannot tokenize DOT at {text[pos:pos + 40]!r}"
        pos = m.end()
        if m.group("q") is not None:
            raw = m.group("q")[1:-1]
            # The lexer's rules: \" is a quote, backslash-newline is a continuation; other
            # backslash pairs are kept for the label's escString processing.
            tokens.append(("id", raw.replace('\\"', '"').replace("\\\n", "")))
            assert "\n" not in raw, "raw newline inside a quoted string"
        elif m.group("p") is not None:
            tokens.append(("p", m.group("p")))
        elif m.group("w") is not None:
            tokens.append(("id", m.group("w")))
    return tokens


def esc_string(value: str) -> str:
    """Graphviz escString rendering of a label: \\\\ → \\, \\n → newline (only what we emit)."""
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"\\": "\\", "n": "\n", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
            continue
        assert c != "\\", "dangling backslash"
        out.append(c)
        i += 1
    return "".join(out)


def parse_dot(text: str) -> dict:
    """Parse ``strict digraph ID { stmts }`` into nodes, edges and graph attributes."""
    toks = tokenize(text)
    i = 0

    def take(kind=None, value=None):
        nonlocal i
        tok = toks[i]
        assert kind is None or tok[0] == kind, (tok, kind)
        assert value is None or tok[1] == value, (tok, value)
        i += 1
        return tok[1]

    def attrs():
        out = {}
        take("p", "[")
        while toks[i] != ("p", "]"):
            k = take("id")
            take("p", "=")
            out[k] = take("id")
            if toks[i] in (("p", ","), ("p", ";")):
                take("p")
        take("p", "]")
        return out

    take("id", "strict")
    take("id", "digraph")
    name = take("id")
    take("p", "{")
    nodes, edges, graph = {}, [], {}
    while toks[i] != ("p", "}"):
        first = take("id")
        if first == "node" and toks[i] == ("p", "["):
            graph["node"] = attrs()
        elif toks[i] == ("p", "="):
            take("p", "=")
            graph[first] = take()
        elif toks[i] == ("p", "->"):
            take("p", "->")
            second = take("id")
            edges.append((first, second, attrs() if toks[i] == ("p", "[") else {}))
        else:
            assert first not in nodes, f"node {first!r} declared twice"
            nodes[first] = attrs() if toks[i] == ("p", "[") else {}
        if toks[i] == ("p", ";"):
            take("p", ";")
    take("p", "}")
    assert i == len(toks), "trailing tokens"
    return {"name": name, "nodes": nodes, "edges": edges, "graph": graph}


def render_json(text: str) -> dict:
    """Graphviz's own parse of the text (``dot -Tjson``); fails on any warning."""
    proc = subprocess.run(["dot", "-Tjson"], input=text.encode(), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    return json.loads(proc.stdout)


needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


def hostile_spec():
    files = [{"name": f"file {n}", "path": f"p{i}"} for i, n in enumerate(HOSTILE)]
    user_data = [{"name": f"ud {n}"} for n in HOSTILE]
    jobs = []
    for i, n in enumerate(HOSTILE):
        jobs.append({
            "name": n, "command": "c",
            "input_files": [files[i]["name"]],
            "output_files": [files[(i + 1) % len(files)]["name"]] if i % 2 else [],
            "input_user_data": [user_data[i]["name"]] if i % 3 == 0 else [],
            "output_user_data": [user_data[i]["name"]] if i % 3 == 1 else [],
            "blocked_by": [HOSTILE[i - 1]] if i else [],
        })
    return {"files": files, "user_data": user_data, "jobs": jobs}


@pytest.fixture
def hostile(store):
    return specifications.create_from_specification(store, hostile_spec())["_key"]


def test_job_job_dependencies_structure(store):
    wf = specifications.create_from_specification(store, {
        "name": "abc <flow>",
        "jobs": [{"name": "a", "command": "a"}, {"name": "b", "command": "b", "blocked_by": ["a"]},
                 {"name": "c", "command": "c", "blocked_by": ["a", "b"]}]})["_key"]
    text = dot.get_dot_graph(store, wf, "job_job_dependencies")["graph"]
    lines = text.split("\n")
    assert lines[0] == 'strict digraph "job_job_dependencies" {'
    assert lines[1] == 'node [label="\\N"];'
    assert lines[-3] == 'labelloc="t";' and lines[-2].startswith("label=<") and lines[-1] == "}"
    assert f"abc &lt;flow&gt; (workflow {wf}): Job - Job Dependencies" in lines[-2]
    g = parse_dot(text)
    jobs = {j["name"]: j for j in store.find("jobs", wf)}
    assert list(g["nodes"]) == [jobs[n]["_id"] for n in "abc"]
    assert [(f, t, a["label"]) for f, t, a in g["edges"]] == [
        (jobs["a"]["_id"], jobs["b"]["_id"], "blocks"),
        (jobs["a"]["_id"], jobs["c"]["_id"], "blocks"),
        (jobs["b"]["_id"], jobs["c"]["_id"], "blocks"),
    ]


def test_status_colors(store):
    wf = specifications.create_from_specification(store, {
        "jobs": [{"name": s, "command": "x"} for s in dot.STATUS_COLORS]})["_key"]
    for job in store.find("jobs", wf):
        store.update("jobs", wf, job["_key"], {"status": job["name"]})
    store.insert("jobs", wf, {"name": "odd", "command": "x", "status": "weird"})
    g = parse_dot(dot.get_dot_graph(store, wf, "job_job_dependencies")["graph"])
    for node in g["nodes"].values():
        status = node["label"]
        assert node["style"] == "filled"
        assert node["fillcolor"] == dot.STATUS_COLORS.get(status, "white")
        assert node["tooltip"].endswith(": " + ("weird" if status == "odd" else status))


def test_file_and_user_data_graphs(store, hostile):
    jobs = store.find("jobs", hostile)
    for name, target, edges in (("job_file_dependencies", "files", ("produces", "needs")),
                                ("job_user_data_dependencies", "user_data",
                                 ("stores", "consumes"))):
        g = parse_dot(dot.get_dot_graph(store, hostile, name)["graph"])
        # Data-flow direction: needs/consumes (stored job -> input) are drawn input -> job.
        expected_edges = [(e["_to"], e["_from"], edge) if edge in ("needs", "consumes")
                          else (e["_from"], e["_to"], edge)
                          for edge in edges for e in store.find(edge, hostile)]
        assert sorted(f"{f} {t} {a['label']}" for f, t, a in g["edges"]) == sorted(
            f"{f} {t} {e}" for f, t, e in expected_edges)
        targets = {t if t.startswith(target) else f for f, t, _ in expected_edges}
        assert set(g["nodes"]) == {j["_id"] for j in jobs} | targets
        # Only targets of edges appear, each once, with their shape.
        assert all(g["nodes"][t]["shape"] in ("note", "cylinder") for t in targets)
        assert dot.GRAPHS[name][0] in g["graph"]["label"]


def test_hostile_names_parse_back_to_themselves(store, hostile):
    for name in dot.GRAPHS:
        text = dot.get_dot_graph(store, hostile, name)["graph"]
        g = parse_dot(text)
        docs = {}
        for coll in ("jobs", "files", "user_data"):
            docs.update({d["_id"]: d for d in store.find(coll, hostile)})
        for node_id, attrs in g["nodes"].items():
            assert esc_string(attrs["label"]) == expected_label(docs[node_id]["name"])


@needs_graphviz
def test_graphviz_accepts_hostile_names(store, hostile):
    docs = {}
    for coll in ("jobs", "files", "user_data"):
        docs.update({d["_id"]: d for d in store.find(coll, hostile)})
    for name in dot.GRAPHS:
        text = dot.get_dot_graph(store, hostile, name)["graph"]
        rendered = render_json(text)
        assert rendered["name"] == name
        objects = rendered.get("objects", [])
        assert {o["name"] for o in objects} == set(parse_dot(text)["nodes"])
        for o in objects:
            assert esc_string(o["label"]) == expected_label(docs[o["name"]]["name"])
        assert len(rendered.get("edges", [])) == len(parse_dot(text)["edges"])
        # And it renders to an image format, as `torc graphs plot` does.
        proc = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True,
                              timeout=60)
        assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()


def test_quote():
    assert dot.quote('a"b') == '"a\\"b"'
    assert dot.quote("a\\") == '"a\\\\"'
    assert dot.quote("x\ny") == '"x\\ny"'
    assert dot.quote("x\r\ny") == '"x\\ny"'
    assert dot.quote("x\x00y") == '"x y"'
    assert dot.quote(12) == '"12"'


def test_nameless_vertices_use_their_key(store):
    wf = specifications.create_from_specification(store, {"jobs": [{"command": "x"}]})["_key"]
    (job,) = store.find("jobs", wf)
    g = parse_dot(dot.get_dot_graph(store, wf, "job_file_dependencies")["graph"])
    assert g["nodes"][job["_id"]]["label"] == job["_key"]


def test_errors(store):
    wf = specifications.create_from_specification(store, {})["_key"]
    with pytest.raises(InvalidInput, match="unknown graph name 'jobs'"):
        dot.get_dot_graph(store, wf, "jobs")
    with pytest.raises(NotFound):
        dot.get_dot_graph(store, "nope", "job_job_dependencies")
    g = parse_dot(dot.get_dot_graph(store, wf, "job_job_dependencies")["graph"])
    assert g["nodes"] == {} and g["edges"] == []


# ----------------------------------------------------------------------------------------------
# Failure, data flow, order, legend, Mermaid
# ----------------------------------------------------------------------------------------------


def _pipeline(store):
    """gen -> data.txt -> use (file), gen -> stats -> report (user data); gen done rc 0, use
    done rc 3 (failed), report done with a failed run 1 then rc 0 in run 2."""
    wf = specifications.create_from_specification(store, {
        "name": "pipe",
        "files": [{"name": "data", "path": "data.txt"}],
        "user_data": [{"name": "stats"}],
        "jobs": [{"name": "gen", "command": "g", "output_files": ["data"],
                  "output_user_data": ["stats"]},
                 {"name": "use", "command": "u", "input_files": ["data"]},
                 {"name": "report", "command": "r", "input_user_data": ["stats"]}]})["_key"]
    jobs = {j["name"]: j for j in store.find("jobs", wf)}
    for name, runs in (("gen", [(1, 0)]), ("use", [(1, 3)]), ("report", [(1, 2), (2, 0)])):
        store.update("jobs", wf, jobs[name]["_key"], {"status": "done"})
        for run_id, rc in runs:
            store.insert("results", wf, {"job_key": jobs[name]["_key"], "run_id": run_id,
                                         "return_code": rc, "exec_time_minutes": 0.1,
                                         "completion_time": "x", "status": "done"})
    return wf, jobs


def test_failed_jobs_are_red_and_in_the_legend(store):
    wf, jobs = _pipeline(store)
    text = dot.get_dot_graph(store, wf, "job_job_dependencies")["graph"]
    g = parse_dot(text)
    colors = {jid: a["fillcolor"] for jid, a in g["nodes"].items()}
    assert colors[jobs["use"]["_id"]] == "red" == dot.STATUS_COLORS["failed"]
    assert colors[jobs["gen"]["_id"]] == "palegreen"
    assert colors[jobs["report"]["_id"]] == "palegreen"  # the latest result succeeded
    assert g["nodes"][jobs["use"]["_id"]]["tooltip"].endswith(": failed")
    legend = g["graph"]["label"]
    assert '<TD BGCOLOR="red">failed</TD>' in legend
    assert '<TD BGCOLOR="palegreen">done</TD>' in legend
    assert "ready" not in legend  # only the statuses present


def test_edges_follow_the_data_and_order_is_stable(store):
    wf, jobs = _pipeline(store)
    g = parse_dot(dot.get_dot_graph(store, wf, "all")["graph"])
    (data,) = store.find("files", wf)
    (stats,) = store.find("user_data", wf)
    edges = {(f, t, a["label"]) for f, t, a in g["edges"]}
    assert (jobs["gen"]["_id"], data["_id"], "produces") in edges
    assert (data["_id"], jobs["use"]["_id"], "needs") in edges
    assert (jobs["gen"]["_id"], stats["_id"], "stores") in edges
    assert (stats["_id"], jobs["report"]["_id"], "consumes") in edges
    ordered = [jobs[n]["_id"] for n in ("gen", "use", "report")] + [data["_id"], stats["_id"]]
    assert list(g["nodes"]) == ordered
    texts = {dot.get_dot_graph(store, wf, "all")["graph"] for _ in range(3)}
    assert len(texts) == 1


def test_mermaid(store):
    wf, jobs = _pipeline(store)
    text = dot.get_dot_graph(store, wf, "all", format="mermaid")["graph"]
    lines = text.splitlines()
    assert lines[:4] == ["---", f"title: pipe (workflow {wf}): Job - File - User Data "
                                "Dependencies", "---", "flowchart TD"]
    assert '  n0["gen"]:::s_done' in lines and '  n1["use"]:::s_failed' in lines
    assert '  n3[/"data"/]' in lines and '  n4[("stats")]' in lines
    assert "  n3 -->|needs| n1" in lines and "  n0 -->|produces| n3" in lines
    assert "  classDef s_failed fill:#ff0000,stroke:#333" in lines
    assert '    legend_s_failed["failed"]:::s_failed' in lines


def test_mermaid_escapes_labels(store):
    wf = specifications.create_from_specification(store, {
        "jobs": [{"name": n, "command": "x"} for n in HOSTILE]})["_key"]
    text = dot.get_dot_graph(store, wf, "job_job_dependencies", format="mermaid")["graph"]
    node_lines = [line for line in text.splitlines() if line.startswith("  n")]
    assert len(node_lines) == len(HOSTILE)
    for line in node_lines:
        label = line[line.index('["') + 2:line.rindex('"]')]
        assert '"' not in label and "<" not in label and "\n" not in label


def test_unknown_format(store):
    wf = specifications.create_from_specification(store, {})["_key"]
    with pytest.raises(InvalidInput, match="unknown graph format 'svg'"):
        dot.get_dot_graph(store, wf, "all", format="svg")
