"""Every ``torc-graph`` command and group has help text with an ``Example:`` block, and
``--help`` works for each."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from torc_graph.cli.main import cli


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, path + (name,))


COMMANDS = list(_walk(cli))


def test_the_tree_has_the_inspection_commands():
    paths = {" ".join(p) for p, _ in COMMANDS}
    for expected in ("workflows list", "workflows show", "workflows status", "workflows create",
                     "workflows delete", "workflows reset", "workflows cancel", "jobs list",
                     "jobs show", "jobs logs", "jobs reset", "files list", "results list",
                     "events list", "events follow", "user-data list", "user-data show",
                     "resource-requirements list", "compute-nodes list", "graph"):
        assert expected in paths


@pytest.mark.parametrize("path, command", [c for c in COMMANDS if c[0]],
                         ids=[" ".join(p) for p, _ in COMMANDS if p])
def test_help_has_an_example(path, command):
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help"
    assert "Example:" in command.help, f"{' '.join(path)} has no Example: block"
    assert "torc-graph " + path[0] in command.help.split("Example:", 1)[1]
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


def test_root_help():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("workflows", "jobs", "events", "graph"):
        assert name in result.output


def test_version_names_the_torc_api():
    from torc_graph import __version__

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"torc-graph {__version__} (speaks the torc v0.6.4 HTTP API)\n"
