"""schemas/fleet.schema.json: generated from the models, committed, and actually validating."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import FLEETS, ROOT
from ruamel.yaml import YAML

from reconciler.spec.schema import schema_text

SCHEMA = ROOT / "schemas" / "fleet.schema.json"


def test_committed_schema_is_not_stale() -> None:
    assert SCHEMA.read_text() == schema_text(), "run: fleet schema --out schemas/fleet.schema.json"


@pytest.mark.parametrize("example", sorted(FLEETS.glob("*.yaml")), ids=lambda p: p.name)
def test_schema_accepts_example_fleets(example: Path) -> None:
    doc = YAML(typ="safe").load(example.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("example", sorted(FLEETS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_fleets_carry_the_language_server_modeline(example: Path) -> None:
    assert example.read_text().startswith("# yaml-language-server: $schema=../schemas/fleet.schema.json")


@pytest.mark.parametrize("mutate", [
    lambda d: d["spec"]["tiers"]["local"].update(runtime="bash"),
    lambda d: d["spec"].update(surprise=True),
    lambda d: d["spec"]["agents"][0].update(restart="Sometimes"),
    lambda d: d.pop("metadata"),
], ids=["bad runtime", "unknown key", "bad restart policy", "missing metadata"])
def test_schema_rejects_a_bad_fleet(mutate) -> None:
    doc = YAML(typ="safe").load((FLEETS / "demo.yaml").read_text())
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def test_the_spec_s_default_sections_are_what_validating_an_empty_section_gives() -> None:
    """FleetSpec's default sections (`worktrees`, `budget`, ...) are built without validation
    (`model_construct`: validating each at import built its own validator, a third of the
    models' import time): each must equal the section validated from `{}`, field for field
    and in the fields it says were set."""
    from pydantic import BaseModel

    from reconciler.spec.models import FleetSpec

    defaults = {name: f.default for name, f in FleetSpec.model_fields.items() if isinstance(f.default, BaseModel)}
    assert set(defaults) >= {"worktrees", "concurrency", "budget", "reconcile", "restartBackoff", "gc",
                             "telemetry", "placement"}
    for name, default in defaults.items():
        validated = type(default).model_validate({})
        assert default == validated, name
        assert default.model_fields_set == validated.model_fields_set == set(), name
