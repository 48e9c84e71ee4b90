"""The seeds' documented examples, shared by the tests that send them (../shared/seeds/)."""

from __future__ import annotations

from typing import Any

# seeds/002_2e116a2dcec31f14.txt: SR.event.trackCustomEvent(action, params, label), sent as a
# REST body. ("time" in params is one of Synerise's reserved params, so it is not kept.)
SEED_ACTION = "entries.count"
SEED_PARAMS: dict[str, Any] = {
    "lat": "50.0937",
    "lon": "18.5429",
    "object": "Shopping center",
    "shopId": "S198",
    "shopName": "Chicago",
    "zipCode": "60639",
    "street": "W North Ave",
    "time": 1556474400000,
    "entries": 27,
}
SEED_LABEL = "Entries count"
