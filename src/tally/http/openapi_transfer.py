"""``/openapi.json``'s part for exports and a person's events and erasure (http/transfer_api.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from tally.store.base import EXPORT_COLUMNS, Deletion
from tally.transfer.formats import FORMATS, MEDIA_TYPES

BASE = "/api/v1/apps/{app_id}"
_ERROR = {
    "description": "`{error: {code, message}}`",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string"},
        "description": description,
    }


_APP_ID = _parameter("app_id", "path", "The app's id (24 hex characters).")
_USER = _parameter("user", "path", "A customer id or device id; every id linked to it counts.")
_FORMAT = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": list(FORMATS), "default": "jsonl"},
    "description": "jsonl (one JSON object per line), csv, or parquet.",
}
_FILE = {
    "content": {media: {"schema": {"type": "string"}} for media in MEDIA_TYPES.values()},
}
_COLUMNS = ", ".join(f"`{name}`" for name in EXPORT_COLUMNS)


def _download(operation_id: str, summary: str, parameters: list[dict[str, Any]]) -> dict:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": f"Streamed, oldest event first, with the stored columns: {_COLUMNS}. "
        "See docs/export-import.md for each format; `tally import` reads them back.",
        "security": [{"apiKey": []}],
        "parameters": [_APP_ID, *parameters, _FORMAT],
        "responses": {
            "200": {"description": "The events as a file (an attachment).", **_FILE},
            "400": _ERROR,
            "401": _ERROR,
            "403": _ERROR,
            "503": _ERROR,
        },
    }


def transfer_paths() -> dict[str, Any]:
    # Inlined (the record has no nested types), so merging the paths is all the document needs.
    _, components = msgspec.json.schema_components([Deletion])
    deletion = components["Deletion"]
    return {
        f"{BASE}/export": {
            "get": _download(
                "exportEvents",
                "Export the app's events (CSV, JSON lines or Parquet)",
                [
                    _parameter(
                        "from", "query", "Event time at or after (ISO 8601, a date, or epoch)."
                    ),
                    _parameter("to", "query", "Event time before."),
                ],
            )
        },
        f"{BASE}/users/{{user}}/events": {
            "get": _download(
                "exportPersonEvents",
                "Every event of one person, across their linked ids (a GDPR export)",
                [_USER],
            )
        },
        f"{BASE}/users/{{user}}": {
            "delete": {
                "operationId": "forgetPerson",
                "summary": "Delete every event and identity link of one person (GDPR erasure)",
                "description": "Deletes the events (whatever their time) of the id and every id "
                "linked to it, and their identity links, in one transaction, and records the "
                "deletion. The reply is that record.",
                "security": [{"apiKey": []}],
                "parameters": [_APP_ID, _USER],
                "responses": {
                    "200": {
                        "description": "The deletion record.",
                        "content": {"application/json": {"schema": deletion}},
                    },
                    "401": _ERROR,
                    "403": _ERROR,
                    "503": _ERROR,
                },
            }
        },
    }
