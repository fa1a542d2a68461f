"""SpreadsheetConnector: bulk import of .xlsx/.csv customer records (`crmhub import`), no webhooks.

The hub's importer (hub/importer.py) asks this connector to open a file and hands the batches it yields
to the raw-event store; `parse()` turns a stored batch back into `record.imported` drafts, quarantining
rows per contract §8. The file reading is here because it is the platform's format; the database work is
the kernel's.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, field_validator

from hub import Connector, EventDraft, InboundRequest, ParseContext
from hub.errors import QuarantineError, VerificationError

from .headers import validate_overrides
from .importfile import BODY_FORMAT, DEFAULT_BATCH_ROWS, ImportFile
from .mapping import RowOutcome, analyse_row, quarantine_detail, quarantine_payload, to_draft

_MEMO_BATCHES = 4


class SpreadsheetConfig(BaseModel):
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Header → field overrides applied to every import of this source (e.g. {'座机': 'phone'})",
    )

    @field_validator("mapping")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        validate_overrides(value)
        return value


class SpreadsheetConnector(Connector):
    name = "spreadsheet"
    title = "Spreadsheet import (.xlsx / .csv)"
    config_model = SpreadsheetConfig

    def __init__(self) -> None:
        # Outcomes of the last few batches opened by the importer in this process, by body: parse() of the
        # same bytes is deterministic, so reusing them skips re-validating every phone and email.
        self._memo: OrderedDict[bytes, list[RowOutcome]] = OrderedDict()

    # ---------------------------------------------------------------- import side
    def open_import(
        self, path: str, *, config: SpreadsheetConfig | None = None, overrides: Mapping[str, str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> ImportFile:
        """Open `path` for import; `overrides` (header → field) win over the source's mapping."""
        mapping = {**(config.mapping if config else {}), **(overrides or {})}
        return ImportFile(path, overrides=mapping, batch_rows=batch_rows)

    def remember(self, body: bytes, outcomes: list[RowOutcome]) -> None:
        self._memo[body] = outcomes
        while len(self._memo) > _MEMO_BATCHES:
            self._memo.popitem(last=False)

    # ---------------------------------------------------------------- request path: none
    def verify(self, request: InboundRequest, config: SpreadsheetConfig) -> None:
        raise VerificationError("spreadsheet sources take no webhooks; use `crmhub import FILE`",
                                code="import_only")

    # ---------------------------------------------------------------- pipeline
    def parse(self, request: InboundRequest, config: SpreadsheetConfig, ctx: ParseContext) -> list[EventDraft]:
        body = _read_body(request.body)
        file, headers, fields = body["file"], body["headers"], body["fields"]
        outcomes = self._memo.pop(request.body, None)
        if outcomes is None or len(outcomes) != len(body["rows"]):
            outcomes = [analyse_row(r[0], r[1], fields, r[2] if len(r) > 2 else ()) for r in body["rows"]]
        drafts = []
        mapped = sorted({f for f in fields if f and not f.startswith("extra:")})
        for raw, outcome in zip(body["rows"], outcomes, strict=True):
            if outcome.quarantined:
                ctx.quarantine(outcome.reasons[0], quarantine_detail(outcome, headers=headers, fields=fields),
                               quarantine_payload(outcome, file=file, headers=headers, cells=raw[1]),
                               key=outcome.source_event_id)  # the row's content: a re-import adds none
            else:
                drafts.append(to_draft(outcome, file=file, received_at=ctx.received_at, fields=mapped))
        return drafts


def _read_body(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QuarantineError("unreadable_batch", f"import batch is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != BODY_FORMAT:
        raise QuarantineError("unreadable_batch", f"not a {BODY_FORMAT} batch")
    rows, fields, headers = body.get("rows"), body.get("fields"), body.get("headers")
    if not isinstance(rows, list) or not isinstance(fields, list) or not isinstance(headers, list):
        raise QuarantineError("unreadable_batch", "batch lacks rows, fields or headers")
    for row in rows:
        if not (isinstance(row, list) and len(row) >= 2 and isinstance(row[0], int) and isinstance(row[1], list)
                and (len(row) == 2 or (isinstance(row[2], list) and all(isinstance(c, int) for c in row[2])))):
            raise QuarantineError("unreadable_batch", "a batch row is not [row, cells, formulas?]")
    if not all(f is None or isinstance(f, str) for f in fields):
        raise QuarantineError("unreadable_batch", "fields must be strings or null")
    body.setdefault("file", "")
    return body
