"""config.example.yaml documents exactly the keys the config accepts: every key of the schema
appears there (set, or shown in a commented example line), and every key it shows — commented
ones included — is one the schema accepts. (That it loads is tests/test_config.py's job.)"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from monitor.config import Config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
KEY = re.compile(r"[a-z][a-z0-9_]*")
# Mappings whose keys the user makes up (request headers, alert labels): not schema keys.
FREE_FORM = {"headers", "labels", "annotations"}


def models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def schema_keys(model: type[BaseModel] = Config, seen: set[type] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    keys = {field.alias or name for name, field in model.model_fields.items()}  # as written in YAML (`for`, not `for_`)
    for field in model.model_fields.values():
        for nested in models_in(field.annotation):
            keys |= schema_keys(nested, seen)
    return keys


def keys_of(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                found.add(k)
                if k not in FREE_FORM:
                    found |= keys_of(v)
    elif isinstance(value, list):
        for v in value:
            found |= keys_of(v)
    return found


def commented_keys(text: str) -> set[str]:
    """Keys of commented-out example lines (`# sni: github.com`, `# - {name: x, bind: …}`);
    prose such as `# tcp: does a TCP connect succeed?` has a sentence for a value: skipped."""
    found: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"\s*#\s?(?:-\s+)?(.*)$", line)
        if not m:
            continue
        try:
            value = yaml.safe_load(m.group(1))
        except yaml.YAMLError:
            continue
        items = value.items() if isinstance(value, dict) else ()
        if any(isinstance(v, str) and " " in v for _, v in items):
            continue
        found |= {k for k in keys_of(value) if isinstance(k, str) and KEY.fullmatch(k)}
    return found


def test_every_accepted_key_is_documented_and_every_documented_key_accepted() -> None:
    text = EXAMPLE.read_text()
    documented = keys_of(yaml.safe_load(text)) | commented_keys(text)
    accepted = schema_keys()
    assert sorted(accepted - documented) == [], "accepted but not documented in config.example.yaml"
    assert sorted(documented - accepted) == [], "documented in config.example.yaml but refused by the schema"


def test_the_walk_sees_commented_keys_and_skips_prose() -> None:
    keys = commented_keys("# connect_timeout: 5s  # TCP connect\n# - {name: b, bind: 192.0.2.1}\n# tcp: does a TCP connect succeed?\n")
    assert keys == {"connect_timeout", "name", "bind"}
