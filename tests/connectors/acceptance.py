"""The connector acceptance suite's case format (in the spirit of Airbyte's Connector Acceptance Tests).

Each connector's test package defines `CASE = AcceptanceCase(...)` in
`tests/connectors/<name>/acceptance.py`; `test_acceptance.py` collects them all and
runs the same checks on every connector:

- the config schema is valid JSON Schema and a bad config is rejected (InvalidRequest, 422);
- verify() rejects a tampered body and a wrong secret (VerificationError);
- handshakes are answered exactly as the platform expects;
- every fixture parses into valid EventDrafts;
- redelivery deduplicates (same dedup key for the same request; one event end to end over HTTP);
- arbitrary bytes never raise anything but a verification, payload or quarantine error.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.connector import Connector, InboundRequest


@dataclass
class Handshake:
    request: InboundRequest
    status: int
    body: Any  # expected reply body: dict (JSON), str or bytes


@dataclass
class AcceptanceCase:
    connector: Callable[[], Connector]
    good_config: dict[str, Any]
    bad_config: dict[str, Any]
    # Build a correctly authenticated request for `body` with `config` (a dict, as stored).
    sign: Callable[[bytes, dict[str, Any]], InboundRequest]
    # Fixture files, each a platform payload as platforms.md documents it; or (name, bytes) pairs.
    fixtures: list[Path] = field(default_factory=list)
    # Bytes fixtures (e.g. XML), name → body, signed with `sign` like the JSON ones.
    raw_fixtures: dict[str, bytes] = field(default_factory=dict)
    # Secrets that must be rejected when used to sign (a wrong key).
    wrong_config: dict[str, Any] | None = None
    handshakes: list[Handshake] = field(default_factory=list)
    # Connectors that do not authenticate with a signature (none here) can set this False.
    signs_body: bool = True
    # The minimum number of events each fixture must yield (0 for pure status events).
    min_events: int = 1
    # How to tamper with a signed request when the signed value is not the raw body (e.g. WeCom's
    # <Encrypt> element); default: append a byte to the body. Used only when `signs_body` is True.
    tamper: Callable[[InboundRequest], InboundRequest] | None = None

    def fixture_bodies(self) -> list[tuple[str, bytes]]:
        out = [(p.name, p.read_bytes()) for p in self.fixtures]
        out += list(self.raw_fixtures.items())
        return out


def take_in(connector: Connector, request: InboundRequest, config: Any) -> bool:
    """What the hook route runs on a request before storing it: verify, handshake, dedup key, event count and
    keys. False for a handshake (answered, nothing stored); raises what the route answers with."""
    connector.verify(request, config)
    if connector.handshake(request, config) is not None:
        return False
    connector.dedup_key(request, config)
    connector.event_count(request, config)
    connector.event_keys(request, config)
    return True


def all_cases() -> dict[str, AcceptanceCase]:
    """Every `tests/connectors/*/acceptance.py` CASE, by connector package name."""
    import tests.connectors as pkg

    cases: dict[str, AcceptanceCase] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"tests.connectors.{info.name}.acceptance")
        except ModuleNotFoundError as exc:
            if exc.name == f"tests.connectors.{info.name}.acceptance":
                continue
            raise
        cases[info.name] = module.CASE
    return cases


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
