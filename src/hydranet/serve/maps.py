"""Per-pixel answers: a dense task's map is answered as a base64 PNG (class indices) or .npy (values) by default;
`POST /predict?format=json` asks for nested lists instead, converted here from the encoded answer.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException

from hydranet.kinds.pixels import is_encoded_map, map_values
from hydranet.serve.batch import json_body

FORMATS = ("encoded", "json")  # the default: PNG/.npy in base64; json: nested lists (rows of pixels)


def requested_format(query: dict[str, str]) -> str:
    """The `format` query parameter, checked before any work is queued."""
    fmt = query.get("format", FORMATS[0])
    if fmt not in FORMATS:
        raise HTTPException(422, f"format: {fmt!r} is not a format (expected json for nested lists, or no format "
                                 f"for per-pixel maps as base64 PNG/.npy)")
    return fmt


def with_lists(body: bytes) -> bytes:
    """An answer whose encoded maps are replaced by their nested lists; other answers are returned as they are."""
    content = json.loads(body)
    if "predictions" not in content:
        return body
    content["predictions"] = [{task: _lists(answer) for task, answer in row.items()} for row in content["predictions"]]
    return json_body(content)


def _lists(answer: Any) -> Any:
    if not isinstance(answer, dict):
        return answer
    return {key: map_values(value).tolist() if is_encoded_map(value) else value for key, value in answer.items()}
