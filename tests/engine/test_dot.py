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
            graph[first] = take("id")
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
        "jobs": [{"name": "a", "command": "a"}, {"name": "b", "command": "b", "blocked_by": ["a"]},
                 {"name": "c", "command": "c", "blocked_by": ["a", "b"]}]})["_key"]
    text = dot.get_dot_graph(store, wf, "job_job_dependencies")["graph"]
    lines = text.split("\n")
    assert lines[0] == 'strict digraph "job_job_dependencies" {'
    assert lines[1] == 'node [label="\\N"];'
    assert lines[-3:] == ['labelloc="t";', 'label="Job - Job Dependencies";', "}"]
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
        expected_edges = [(e["_from"], e["_to"], edge) for edge in edges
                          for e in store.find(edge, hostile)]
        assert [(f, t, a["label"]) for f, t, a in g["edges"]] == expected_edges
        targets = {t for _, t, _ in expected_edges}
        assert set(g["nodes"]) == {j["_id"] for j in jobs} | targets
        # Only targets of edges appear, each once, with their shape.
        assert all(g["nodes"][t]["shape"] in ("note", "cylinder") for t in targets)
        assert g["graph"]["label"] == dot.GRAPHS[name][0]


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
