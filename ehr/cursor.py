"""Opaque paging cursors (keyset positions), shared by history and search paging."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from ehr.errors import BadRequest

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(token: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequest("Invalid paging cursor", "invalid") from exc
    if not isinstance(values, list):
        raise BadRequest("Invalid paging cursor", "invalid")
    return values
