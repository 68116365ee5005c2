"""The report document as JSON: per check (and per check from each network) its `check` name
and `score`, and everything else the other formats show, for other tools to consume."""

from __future__ import annotations

import json
from typing import Any


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
