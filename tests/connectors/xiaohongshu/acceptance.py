"""Acceptance case for `xiaohongshu`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.xiaohongshu import XiaohongshuConnector, signature
from hub.connector import InboundRequest
from tests.connectors.acceptance import AcceptanceCase

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = {"token": "test-xhs-token-0001"}


def sign(body: bytes, config: dict[str, Any]) -> InboundRequest:
    return InboundRequest("POST", body, {"content-type": "application/json",
                                         "x-red-signature": signature(config["token"].encode(), body)})


CASE = AcceptanceCase(
    connector=XiaohongshuConnector,
    good_config=CONFIG,
    bad_config={"token": "t", "label_map": {"电话": "telephone_number"}},
    wrong_config={"token": "another-landing-page"},
    sign=sign,
    fixtures=sorted(FIXTURES.glob("*.json")),
)
