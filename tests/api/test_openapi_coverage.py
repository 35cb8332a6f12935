"""Every operation of the torc v0.6.4 OpenAPI document is routed to a responder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

SPEC = Path(__file__).resolve().parents[3] / "shared" / "api" / "torc-v0.6.4-openapi.yaml"
METHODS = ("get", "post", "put", "delete", "patch")


def operations():
    if not SPEC.is_file():
        pytest.skip(f"the torc OpenAPI document is not at {SPEC}")
    spec = yaml.safe_load(SPEC.read_text())
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method.upper(), item[method]["operationId"]


def test_every_operation_has_a_responder(client):
    app = client.app
    missing = []
    ops = list(operations())
    for path, method, op in ops:
        # A concrete path: every template field becomes a plausible value.
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        route = app._router.find(concrete)
        responder = route[1].get(method) if route else None
        # Falcon answers methods a resource lacks with a generated 405 responder.
        if responder is None or getattr(responder, "__name__", "") == "method_not_allowed":
            missing.append(f"{method} {path} ({op})")
    assert len(ops) >= 130
    assert not missing, "\n".join(missing)


def test_the_check_detects_a_missing_method(client):
    route = client.app._router.find("/ping")
    assert getattr(route[1]["DELETE"], "__name__", "") == "method_not_allowed"
