"""Acceptance case for `web` (Segment HTTP Tracking API)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from connectors.web import WebConnector
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase

FIXTURES = Path(__file__).parent / "fixtures"


def sign(body: bytes, config: dict[str, Any]) -> InboundRequest:
    token = base64.b64encode(f"{config['write_key']}:".encode()).decode()
    return InboundRequest("POST", body, {"authorization": f"Basic {token}", "content-type": "application/json"},
                          path="v1/batch")


CASE = AcceptanceCase(
    connector=WebConnector,
    good_config={"write_key": "wk-good-000001"},
    bad_config={"write_key": ""},
    wrong_config={"write_key": "wk-wrong-00001"},
    sign=sign,
    fixtures=sorted(FIXTURES.glob("*.json")),
    signs_body=False,  # Segment authenticates with Basic auth, not a body signature
)
