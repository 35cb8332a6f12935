"""``torc-graph graph``: DOT from the server, the merged ``all`` graph, SVG/PNG rendering."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz `dot` is not installed (CI installs it)")


def _job_id(diamond, name):
    return f'"jobs__{diamond.key}/{diamond.jobs[name]}"'


def test_dot_jobs_graph(invoke, diamond):
    result = invoke("graph", diamond.key)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith('strict digraph "job_job_dependencies" {')
    assert text.rstrip().endswith("}")
    # blocks edges derived from the files: preprocess -> work1/work2 -> postprocess
    for a, b in (("preprocess", "work1"), ("preprocess", "work2"), ("work1", "postprocess"),
                 ("work2", "postprocess")):
        assert f"{_job_id(diamond, a)} -> {_job_id(diamond, b)}" in text
    # nodes are colored by status (done and canceled differ)
    lines = {line.split(" ")[0]: line for line in text.splitlines() if "fillcolor" in line}
    done = lines[_job_id(diamond, "work1")]
    canceled = lines[_job_id(diamond, "postprocess")]
    assert "fillcolor" in done and done.split("fillcolor=")[1] != canceled.split("fillcolor=")[1]


@needs_dot
def test_dot_all_merges_the_three_graphs_into_valid_dot(invoke, diamond, tmp_path):
    out = tmp_path / "all.dot"
    result = invoke("graph", diamond.key, "--kind", "all", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith('strict digraph "all" {')
    assert text.count("strict digraph") == 1
    assert 'label="blocks"' in text and 'label="needs"' in text and 'label="stores"' in text
    assert 'label="consumes"' in text
    node = f"{_job_id(diamond, 'work1')} ["
    assert sum(line.startswith(node) for line in text.splitlines()) == 1  # each node once
    # Graphviz accepts it.
    check = subprocess.run(["dot", "-Tcanon"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("kind, edge", [("files", "produces"), ("user-data", "consumes")])
def test_dot_other_kinds(invoke, diamond, kind, edge):
    result = invoke("graph", diamond.key, "--kind", kind)
    assert result.exit_code == 0, result.output
    assert f'label="{edge}"' in result.stdout


@needs_dot
def test_svg_to_file(invoke, diamond, tmp_path):
    out = tmp_path / "graph.svg"
    result = invoke("graph", diamond.key, "--kind", "all", "--format", "svg", "-o", out)
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "work1" in out.read_text()


@needs_dot
def test_png_to_file_and_stdout(invoke, diamond, tmp_path):
    out = tmp_path / "graph.png"
    result = invoke("graph", diamond.key, "--format", "png", "--output", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    result = invoke("graph", diamond.key, "--format", "png")
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(PNG_MAGIC)


def test_missing_dot_is_a_clear_error(invoke, diamond, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = invoke("graph", diamond.key, "--format", "svg", env={"PATH": str(empty)})
    assert result.exit_code == 1
    assert "Graphviz" in result.stderr and "--format dot" in result.stderr
    assert "Traceback" not in result.output
    # DOT output does not need Graphviz.
    assert invoke("graph", diamond.key, env={"PATH": str(empty)}).exit_code == 0


def test_graph_errors(invoke, diamond):
    assert invoke("graph", "999999").exit_code == 4
    assert invoke("graph", diamond.key, "--kind", "nodes").exit_code == 2
    assert invoke("graph", diamond.key, "--format", "pdf").exit_code == 2


def test_failed_job_is_red_with_a_legend_and_the_workflow_name(invoke, diamond):
    text = invoke("graph", "diamond").stdout  # by name
    work2 = next(line for line in text.splitlines() if line.startswith(_job_id(diamond, "work2")))
    assert 'fillcolor="red"' in work2 and "failed" in work2
    assert f"diamond (workflow {diamond.key})" in text
    assert '<TD BGCOLOR="red">failed</TD>' in text


def test_files_graph_arrows_follow_the_data(invoke, diamond, client):
    text = invoke("graph", diamond.key, "--kind", "files").stdout
    f1 = next(f["_id"] for f in client.iter_items(f"/workflows/{diamond.key}/files")
              if f["name"] == "f1")
    assert f'{_job_id(diamond, "preprocess")} -> "{f1}" [label="produces"]' in text
    assert f'"{f1}" -> {_job_id(diamond, "work1")} [label="needs"]' in text


def test_mermaid_export(invoke, diamond, tmp_path):
    result = invoke("graph", diamond.key, "--kind", "all", "--format", "mermaid")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "---" and lines[3] == "flowchart TD"
    assert any('["work2"]:::s_failed' in line for line in lines)
    assert any("-->|needs|" in line for line in lines)
    out = tmp_path / "g.mmd"
    assert invoke("graph", diamond.key, "--format", "mermaid", "-o", out).exit_code == 0
    assert out.read_text().startswith("---\ntitle: diamond")
