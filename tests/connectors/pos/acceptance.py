"""Acceptance case for `pos` (hub push format, X-Hub-Signature-256)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from connectors.pos import PosConnector
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "pos-secret-0123456789"


def sign(body: bytes, config: dict[str, Any]) -> InboundRequest:
    digest = hmac.new(config["secret"].encode(), body, hashlib.sha256).hexdigest()
    return InboundRequest("POST", body, {"content-type": "application/json", "x-hub-signature-256": f"sha256={digest}"})


CASE = AcceptanceCase(
    connector=PosConnector,
    good_config={"secret": SECRET},
    bad_config={"secret": "short"},
    wrong_config={"secret": "pos-wrong-secret-000000"},
    sign=sign,
    fixtures=sorted(FIXTURES.glob("*.json")),
)
