"""Acceptance case for `callcenter` (TCCC push, HTTP Basic; no body signature)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from connectors.callcenter import CallcenterConnector
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = {"vendor": "tccc", "username": "tccc-push", "password": "tccc-password-01", "own_numbers": ["4008001234"]}


def action_for(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return "cdr"
    return "record" if isinstance(data, dict) and "EndpointUser" in data else "cdr"


def sign(body: bytes, config: dict[str, Any], push_uuid: str = "push-uuid-0001") -> InboundRequest:
    token = base64.b64encode(f"{config['username']}:{config['password']}".encode()).decode()
    headers = {"authorization": f"Basic {token}", "content-type": "application/json;charset=utf8",
               "x-tccc-push-uuid": push_uuid}
    return InboundRequest("POST", body, headers, {"action": action_for(body), "version": "1"})


CASE = AcceptanceCase(
    connector=CallcenterConnector,
    good_config=CONFIG,
    bad_config={"vendor": "avaya", "username": "", "password": "x"},
    wrong_config={**CONFIG, "password": "wrong-password-01"},
    sign=sign,
    fixtures=sorted(FIXTURES.glob("*.json")),
    signs_body=False,  # TCCC sends Basic credentials; the platform signs nothing (platforms.md §5)
)
