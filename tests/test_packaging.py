"""The package list in setup.cfg is explicit; these tests keep it honest."""

import configparser
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _declared_packages():
    return {p.strip() for p in _setup_cfg()["options"]["packages"].split() if p.strip()}


def _package_dirs():
    cfg = _setup_cfg()
    mapping = {}
    for line in cfg["options"]["package_dir"].strip().splitlines():
        name, _, path = line.partition("=")
        mapping[name.strip()] = path.strip()
    return mapping


def _discovered_packages():
    found = set()
    for init in (ROOT / "torc_graph").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))
    for name, path in _package_dirs().items():
        for init in (ROOT / path).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / path)
            found.add(".".join((name, *rel.parts)))
    return found


def test_every_package_is_declared():
    assert _discovered_packages() == _declared_packages()


def test_mapped_directories_are_packages():
    for name, path in _package_dirs().items():
        assert (ROOT / path / "__init__.py").is_file(), f"{path}/ needs __init__.py for {name}"


def test_no_root_conftest_and_no_test_packages():
    assert not (ROOT / "conftest.py").exists()
    assert not list((ROOT / "tests").rglob("__init__.py"))


def test_console_script_points_at_cli():
    scripts = _setup_cfg()["options.entry_points"]["console_scripts"]
    assert "torc-graph = torc_graph.cli.main:cli" in scripts


def test_schemas_are_read_from_the_installed_package():
    """A non-editable install has no ``schemas/`` beside ``torc_graph/``: validation must load
    the JSON files from the ``torc_graph.schemas`` package, which setup.cfg installs."""
    import torc_graph.schemas
    from torc_graph import validation

    package_dir = pathlib.Path(torc_graph.schemas.__file__).resolve().parent
    assert validation.SCHEMA_DIR.resolve() == package_dir
    assert "*.json" in _setup_cfg()["options.package_data"]["torc_graph.schemas"]
    for name in validation.schema_names():
        assert (package_dir / f"{name}.json").is_file()


def test_sources_do_not_reach_outside_their_package():
    """Code that locates files relative to the source tree breaks after `pip install .`."""
    for path in list((ROOT / "torc_graph").rglob("*.py")) + list((ROOT / "cli").rglob("*.py")):
        text = path.read_text()
        assert "parent.parent" not in text and "parents[" not in text, path


def test_spec_package_and_its_parsers_are_declared():
    """torc_graph.spec reads YAML 1.2 (ruamel.yaml), KDL v2 (ckdl) and Rust-like regexes."""
    assert "torc_graph.spec" in _declared_packages()
    requires = _setup_cfg()["options"]["install_requires"]
    for dist in ("ruamel.yaml", "ckdl", "regex", "json5"):
        assert dist in requires, dist
