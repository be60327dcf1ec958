"""Typed records as JSON: the one writer for deploy.json and summary.json, whose results are frozen dataclasses.

A dataclass field marked `OPTIONAL` is left out of the JSON when it is None (what a run without a target or
without --mcu does not have).
"""

from __future__ import annotations

import dataclasses

OPTIONAL = {"omit_when_none": True}
JSON = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None  # what json.dumps writes


def to_json(obj: object) -> JSON:
    """Plain JSON-ready data of a result: dataclasses as dicts in field order (OPTIONAL fields that are
    None left out), lists, tuples and dicts element by element."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_json(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("omit_when_none") and getattr(obj, f.name) is None)
        }
    if isinstance(obj, dict):
        return {key: to_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(value) for value in obj]
    return obj
