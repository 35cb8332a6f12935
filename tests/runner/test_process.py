"""The job process rules: shell or not, stdio files, process groups, stats, resources."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import psutil
import pytest

from torc_graph.runner.process import JobProcess, argv_for, command_line, stdio_paths
from torc_graph.runner.resources import GIB, Resources


@pytest.mark.parametrize("command, argv", [
    ("echo hello world", ["echo", "hello", "world"]),
    ("python script.py --name 'a b' \"c d\"", ["python", "script.py", "--name", "a b", "c d"]),
    ("echo a | wc -l", ["/bin/sh", "-c", "echo a | wc -l"]),
    ("echo $HOME", ["/bin/sh", "-c", "echo $HOME"]),
    ("ls *.txt", ["/bin/sh", "-c", "ls *.txt"]),
    ("run > out.txt", ["/bin/sh", "-c", "run > out.txt"]),
    ("a && b", ["/bin/sh", "-c", "a && b"]),
    ("FOO=1 prog", ["/bin/sh", "-c", "FOO=1 prog"]),
    ("prog --opt=1", ["prog", "--opt=1"]),
    ("line1\nline2", ["/bin/sh", "-c", "line1\nline2"]),
])
def test_shell_rule(command, argv):
    assert argv_for(command) == argv


def test_bad_commands():
    with pytest.raises(ValueError):
        argv_for("echo 'unclosed")
    with pytest.raises(ValueError):
        argv_for("   ")


def test_invocation_script_is_prepended():
    assert command_line({"command": "run.py -x"}) == "run.py -x"
    assert command_line({"command": "run.py -x", "invocation_script": "python3"}) == \
        "python3 run.py -x"


def _job(command: str, key: str = "7") -> dict:
    return {"_key": key, "command": command, "internal": {"runtime_seconds": 0}}


def _wait_exit(proc: JobProcess, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not proc.has_exited():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_stdio_files_and_return_code(tmp_path):
    proc = JobProcess(_job("sh -c 'echo out; echo err >&2; exit 4'"), 3, tmp_path,
                      {"PATH": "/usr/bin:/bin"})
    proc.start()
    _wait_exit(proc)
    assert proc.finish() == 4
    out, err = stdio_paths(tmp_path, "7", 3)
    assert out == tmp_path / "job-stdio" / "7_3.o"
    assert out.read_text() == "out\n" and err.read_text() == "err\n"


def test_leftover_processes_of_a_finished_job_are_killed(tmp_path):
    # The job starts a background sleep and exits at once: the sleep must not survive it.
    proc = JobProcess(_job("sleep 30 & echo $!"), 1, tmp_path, {"PATH": "/usr/bin:/bin"})
    proc.start()
    _wait_exit(proc)
    assert proc.finish() == 0
    child = int(stdio_paths(tmp_path, "7", 1)[0].read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_request_stop_signals_the_group_then_kills(tmp_path):
    # A job that ignores SIGTERM is killed when the grace period ends.
    (tmp_path / "stubborn.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(1, flush=True)\ntime.sleep(30)\n")
    # No shell syntax: python itself is the job's main process.
    proc = JobProcess(_job(f"{sys.executable} stubborn.py"), 1, tmp_path, {},
                      cwd=str(tmp_path))
    proc.start()
    out = stdio_paths(tmp_path, "7", 1)[0]
    deadline = time.monotonic() + 10
    while not out.read_text():  # the handler is in place
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.request_stop("terminated", grace=0.3)
    time.sleep(0.1)
    assert not proc.has_exited()
    time.sleep(0.3)
    proc.enforce_kill_deadline(time.monotonic())
    _wait_exit(proc)
    assert proc.finish() == -signal.SIGKILL
    assert proc.stop_reason == "terminated"


def test_sampling_measures_the_process_tree(tmp_path):
    code = "import time; b = bytearray(60 << 20); t = time.time()\nwhile time.time() - t < 1: pass"
    (tmp_path / "busy.py").write_text(code)
    proc = JobProcess(_job(f"sh -c '{sys.executable} busy.py; true'"), 1, tmp_path, {},
                      cwd=str(tmp_path))
    proc.start()
    for _ in range(6):
        time.sleep(0.12)
        proc.sample(time.monotonic())
    _wait_exit(proc)
    proc.finish()
    doc = proc.stats.document("7", 1, "now")
    assert doc["num_samples"] >= 3
    assert doc["max_rss"] >= 60 << 20  # the python grandchild, under sh
    assert doc["max_cpu_percent"] > 10  # a busy loop; the machine may be shared


def test_unstartable_command(tmp_path):
    proc = JobProcess(_job("/no/such/binary"), 1, tmp_path, {})
    proc.start()
    assert not proc.started and proc.has_exited() and proc.finish() == 127
    assert "/no/such/binary" in stdio_paths(tmp_path, "7", 1)[1].read_text()


def test_spawned_job_finds_its_program_on_the_job_path_and_sees_default_sigpipe(tmp_path):
    # The program is looked up in the job's PATH (not the runner's), as execvp would; a
    # program removed after a first run is reported as not startable, not cached forever.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prog = bin_dir / "only-here"
    prog.write_text("#!/bin/sh\nyes | head -n 2\n")  # yes must die of SIGPIPE, silently
    prog.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = JobProcess(_job("only-here"), 1, tmp_path, env)
    proc.start()
    _wait_exit(proc)
    assert proc.finish() == 0
    out, err = stdio_paths(tmp_path, "7", 1)
    assert out.read_text() == "y\ny\n" and err.read_text() == ""
    prog.unlink()
    again = JobProcess(_job("only-here"), 1, tmp_path, env)
    again.start()
    assert not again.started and again.finish() == 127
    assert out.read_text() == "" and "only-here" in err.read_text()


def test_a_removed_stdio_directory_is_made_again(tmp_path):
    first = JobProcess(_job("true"), 1, tmp_path, {"PATH": "/usr/bin:/bin"})
    first.start()
    _wait_exit(first)
    assert first.finish() == 0
    shutil.rmtree(tmp_path / "job-stdio")  # e.g. cleaned up while the runner runs
    second = JobProcess(_job("echo again", key="8"), 1, tmp_path, {"PATH": "/usr/bin:/bin"})
    second.start()
    _wait_exit(second)
    assert second.finish() == 0
    assert stdio_paths(tmp_path, "8", 1)[0].read_text() == "again\n"


def test_spawned_job_does_not_inherit_the_runners_descriptors(tmp_path, monkeypatch):
    from torc_graph.runner import process
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)  # as if the runner's own parent had passed it
    monkeypatch.setattr(process, "_sealed", False)
    try:
        proc = JobProcess(_job("ls /proc/self/fd"), 1, tmp_path, {"PATH": "/usr/bin:/bin"})
        proc.start()
        _wait_exit(proc)
        assert proc.finish() == 0
        fds = {int(x) for x in stdio_paths(tmp_path, "7", 1)[0].read_text().split()}
        assert write_fd not in fds and {0, 1, 2} <= fds
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_resources_arithmetic():
    total = Resources.detect(num_cpus=4, memory_gb=8.0, num_gpus=0)
    job = Resources.of_job({"internal": {"num_cpus": 3, "memory_bytes": 2 * GIB,
                                         "num_gpus": 0, "num_nodes": 1}})
    free = total - job
    assert (free.num_cpus, free.memory_gb) == (1, 6.0) and free.can_claim()
    assert not (free - job).can_claim()
    assert free.to_body() == {"num_cpus": 1, "memory_gb": 6.0, "num_gpus": 0, "num_nodes": 1,
                              "time_limit": None, "scheduler_config_id": ""}
    detected = Resources.detect()
    assert detected.num_cpus >= 1 and detected.memory_gb > 0 and detected.num_gpus >= 0
