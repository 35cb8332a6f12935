"""Settings are declared once (torc_graph.config.SETTINGS) and each is documented in the README."""

import pathlib

import pytest

from torc_graph.config import SETTINGS, load_settings
from torc_graph.errors import InvalidInput

README = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_each_setting_is_documented_in_the_readme(setting):
    rows = [line for line in README.splitlines() if line.startswith("|") and f"`{setting.env}`" in line]
    assert rows, f"{setting.env} is missing from the README configuration table"


def test_defaults_environment_and_overrides():
    assert load_settings({})["database"] == "sqlite:///torc_graph.db"
    env = {"TORC_GRAPH_SQLITE_SYNCHRONOUS": "normal", "TORC_GRAPH_WORKERS": "3"}
    s = load_settings(env, port=9000)
    assert (s["sqlite_synchronous"], s["workers"], s["port"]) == ("NORMAL", 3, 9000)


@pytest.mark.parametrize(
    "env",
    [
        {"TORC_GRAPH_WORKERS": "0"},
        {"TORC_GRAPH_WORKERS": "many"},
        {"TORC_GRAPH_SQLITE_SYNCHRONOUS": "OFF"},
        {"TORC_GRAPH_MAX_BODY_BYTES": "-1"},
    ],
)
def test_bad_environment_values_name_the_variable(env):
    with pytest.raises(InvalidInput) as exc:
        load_settings(env)
    assert next(iter(env)) in str(exc.value)


def test_unknown_override_is_rejected():
    with pytest.raises(InvalidInput):
        load_settings({}, no_such_setting=1)
