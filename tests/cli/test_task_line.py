"""The CLI's live line for background tasks, and the client feeding it (embedded store)."""

from __future__ import annotations

import io

from torc_graph.cli.tasks import TaskLine
from torc_graph.client import Client


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_task_line_draws_while_running_and_erases_at_the_end():
    out = Tty()
    line = TaskLine(out)
    line({"_key": "1", "state": "running", "operation": "initialize_jobs",
          "phase": "setting job resources and status", "done": 2, "total": 4})
    assert "initialize_jobs: setting job resources and status (2/4)" in out.getvalue()
    line({"_key": "1", "state": "succeeded", "operation": "initialize_jobs", "phase": "x"})
    assert out.getvalue().endswith("\r\x1b[K")


def test_task_line_is_silent_off_a_terminal():
    out = io.StringIO()
    TaskLine(out)({"_key": "1", "state": "running", "operation": "o", "phase": "p"})
    assert out.getvalue() == ""


def test_client_reports_initialize_progress(tmp_path):
    client = Client(database=f"sqlite:///{tmp_path / 't.db'}")
    wf = client.post("/workflows", {"name": "w", "user": "u"})["_key"]
    client.post(f"/workflows/{wf}/jobs", {"name": "a", "command": "true"})
    seen = []
    client.on_task_progress = seen.append
    client.initialize_jobs(wf)
    assert seen and seen[-1]["state"] == "succeeded" and seen[-1]["operation"] == "initialize_jobs"
    assert [j["status"] for j in client.list_jobs(wf)] == ["ready"]
