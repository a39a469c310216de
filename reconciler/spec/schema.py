"""JSON Schema of fleet.yaml, generated from the models (committed as schemas/fleet.schema.json)."""
from __future__ import annotations

import json
from typing import Any

from .models import Fleet

SCHEMA_ID = "https://fleet.invalid/schemas/fleet.schema.json"


def fleet_schema() -> dict[str, Any]:
    schema = Fleet.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "fleet.yaml (fleet/v1alpha1)", **schema}


def schema_text() -> str:
    return json.dumps(fleet_schema(), indent=2, sort_keys=True) + "\n"
