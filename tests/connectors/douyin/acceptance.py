"""Acceptance case for `douyin`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.douyin import DouyinConnector, signature
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase, Handshake

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = {"client_key": "awtest0000000001", "client_secret": "test-douyin-secret-0001"}


def sign(body: bytes, config: dict[str, Any]) -> InboundRequest:
    secret = (config.get("webhook_secret") or config["client_secret"]).encode()
    return InboundRequest("POST", body, {"content-type": "application/json",
                                         "x-douyin-signature": signature(secret, body)})


VERIFY = (FIXTURES / "verify_webhook.json").read_bytes()

CASE = AcceptanceCase(
    connector=DouyinConnector,
    good_config=CONFIG,
    bad_config={"client_key": "awtest0000000001"},
    wrong_config={**CONFIG, "client_secret": "another-app-secret"},
    sign=sign,
    fixtures=sorted(FIXTURES.glob("*.json")),
    handshakes=[Handshake(sign(VERIFY, CONFIG), 200, {"challenge": json.loads(VERIFY)["content"]["challenge"]})],
)
