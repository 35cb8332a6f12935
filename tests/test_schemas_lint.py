"""Static checks of schemas/*.json: valid draft 2020-12, explicit additionalProperties, no
keywords misplaced inside ``properties``, resolvable ``$ref``s, valid defaults, and only keywords
that torc_graph.validation's compiler implements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from torc_graph import model, validation

SCHEMA_FILES = sorted(validation.SCHEMA_DIR.glob("*.json"))
ALL_NAMES = [p.stem for p in SCHEMA_FILES]
FREE_FORM = {"event", "join_filters"}
META = {"_key", "_id", "_rev", "_oldRev"}
#: Schemas the rest of torc_graph relies on (behavior doc §1.3-1.6, §4).
REQUIRED_NAMES = {
    "workflow", "workflow_config", "workflow_status", "job", "file", "user_data",
    "resource_requirements", "result", "compute_node", "compute_node_stats", "job_process_stats",
    "local_scheduler", "aws_scheduler", "slurm_scheduler", "scheduled_compute_node", "event",
    "edge", "bulk_jobs", "workflow_specification", "job_specification", "compute_node_resources",
    "join_filters",
}
#: Keywords that belong to a schema, never to a property name (the Zaqar bug: putting
#: ``additionalProperties`` inside ``properties`` silently declares a property of that name).
#: Keywords that are also real torc field names (description, minimum, maximum) are left out.
SCHEMA_KEYWORDS = {
    "$ref", "$defs", "$id", "$schema", "type", "properties", "required", "additionalProperties",
    "items", "enum", "default", "allOf", "anyOf", "oneOf", "not", "pattern", "format", "const",
    "minLength", "maxLength", "minItems", "maxItems", "patternProperties",
    "unevaluatedProperties", "dependentRequired",
}


def _raw(name: str) -> dict:
    return json.loads((validation.SCHEMA_DIR / f"{name}.json").read_text())


def _registry() -> Registry:
    """All schema files; ``$schema`` is stripped so that a cross-file ``$ref`` keeps the strict
    integer type checker (jsonschema would switch to the plain validator class otherwise)."""
    resources = []
    for n in ALL_NAMES:
        contents = _raw(n)
        del contents["$schema"]
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources)


def _strict_validator_class():
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, x: type(x) is int
    )
    return extend(Draft202012Validator, type_checker=checker)


def _subschemas(node: Any, where: str = "") -> Iterator[tuple[str, dict]]:
    """Every schema object in a schema document, with a readable location."""
    if not isinstance(node, dict):
        return
    yield where or "/", node
    for name, sub in node.get("properties", {}).items():
        yield from _subschemas(sub, f"{where}/properties/{name}")
    for name, sub in node.get("$defs", {}).items():
        yield from _subschemas(sub, f"{where}/$defs/{name}")
    if isinstance(node.get("items"), dict):
        yield from _subschemas(node["items"], f"{where}/items")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _subschemas(node["additionalProperties"], f"{where}/additionalProperties")


def _types(node: dict) -> tuple[str, ...]:
    t = node.get("type", ())
    return (t,) if isinstance(t, str) else tuple(t)


def test_all_required_schemas_exist():
    assert REQUIRED_NAMES <= set(validation.schema_names())
    assert "common" not in validation.schema_names()
    assert set(validation.schema_names()) == set(ALL_NAMES) - {"common"}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_valid_draft_2020_12(name):
    schema = _raw(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.json")
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_object_schemas_state_additional_properties(name):
    for where, node in _subschemas(_raw(name)):
        if "object" in _types(node) or "properties" in node:
            assert "additionalProperties" in node, f"{name}{where}"
            assert node["additionalProperties"] in (True, False), f"{name}{where}"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_no_keywords_inside_properties(name):
    for where, node in _subschemas(_raw(name)):
        misplaced = set(node.get("properties", {})) & SCHEMA_KEYWORDS
        assert not misplaced, f"{name}{where}: keywords used as property names: {misplaced}"
        for prop, sub in node.get("properties", {}).items():
            assert isinstance(sub, dict), f"{name}{where}/properties/{prop} is not a schema"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_only_keywords_the_compiler_implements(name):
    """torc_graph.validation compiles these keywords itself; any other keyword would be
    silently ignored there, so it must not appear."""
    for where, node in _subschemas(_raw(name)):
        extra = set(node) - validation.SUPPORTED_KEYWORDS
        assert not extra, f"{name}{where}: unsupported keywords {extra}"
        if "$ref" in node:
            assert not (set(node) & (validation.VALIDATION_KEYWORDS - {"$ref", "default"}))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_ref_resolves(name):
    registry = _registry()
    resolver = registry.resolver(base_uri=_raw(name)["$id"])
    for where, node in _subschemas(_raw(name)):
        if "$ref" in node:
            resolved = resolver.lookup(node["$ref"]).contents
            assert isinstance(resolved, dict), f"{name}{where}"
            _, _, mine = validation._resolve(node["$ref"], name)
            mine = {k: v for k, v in mine.items() if k != "$schema"}
            assert mine == resolved, f"{name}{where}: validation resolves differently"


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_default_validates_against_its_subschema(name):
    registry = _registry()
    cls = _strict_validator_class()
    base = _raw(name)["$id"]
    count = 0
    for where, node in _subschemas(_raw(name)):
        if "default" in node:
            sub = {k: v for k, v in node.items() if k != "default"}
            sub["$id"] = base + "#default"  # resolve relative $refs against this file
            errors = list(cls(sub, registry=registry).iter_errors(node["default"]))
            assert not errors, f"{name}{where}: {errors[0].message}"
            count += 1
    if name in ("job", "workflow_config", "resource_requirements"):
        assert count > 0


@pytest.mark.parametrize("name", sorted(set(ALL_NAMES) - {"common"}))
def test_typed_schemas_accept_meta_fields_free_form_say_so(name):
    schema = _raw(name)
    assert schema["type"] == "object"
    if name in FREE_FORM:
        assert schema["additionalProperties"] is True
        assert "properties" not in schema
    else:
        assert schema["additionalProperties"] is False
        assert META <= set(schema["properties"]), name
        for field in META:
            assert schema["properties"][field]["$ref"].startswith("common.json#/$defs/")


def test_status_enum_is_model_job_status():
    enum = _raw("common")["$defs"]["job_status"]["enum"]
    assert enum == [s.value for s in model.JobStatus]
    for name in ("job", "result"):
        assert _raw(name)["properties"]["status"] == {"$ref": "common.json#/$defs/job_status"}


def test_integer_fields_are_integers():
    """Spot-check the fields the client declares StrictInt."""
    integer = {"$ref": "common.json#/$defs/integer"}
    expect = {
        "resource_requirements": ("num_cpus", "num_gpus", "num_nodes"),
        "result": ("run_id", "return_code"),
        "compute_node": ("pid",),
        "compute_node_resources": ("num_cpus", "num_gpus", "num_nodes"),
        "workflow_status": ("run_id",),
        "workflow_config": ("compute_node_expiration_buffer_seconds",
                            "compute_node_wait_for_new_jobs_seconds",
                            "compute_node_wait_for_healthy_database_minutes"),
        "slurm_scheduler": ("nodes",),
        "job_process_stats": ("run_id", "num_samples"),
    }
    for name, props in expect.items():
        for prop in props:
            node = _raw(name)["properties"][prop]
            assert {k: v for k, v in node.items() if k != "default"} == integer, (name, prop)
    assert _raw("common")["$defs"]["integer"]["type"] == "integer"
