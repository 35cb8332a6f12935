"""scripts/bench_reads.py at tiny N, so the script cannot rot. Not timed: it asserts only that
every figure is produced with its baseline and ratio."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_bench_reads_runs_every_figure_at_tiny_scale(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_reads",
                                                  ROOT / "scripts" / "bench_reads.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "reads.json"
    assert bench.main(["--sizes", "300", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["sizes"]["300"]
    names = [r["figure"] for r in rows]
    assert len(names) == len(set(names)) == 13
    for r in rows:
        assert r["seconds"] >= 0
        if "baseline" not in r:
            assert "unfiltered baseline" in r["figure"]
        else:
            assert r["ratio"] is None or r["ratio"] >= 0
    assert "| count(status=done) |" in capsys.readouterr().out
