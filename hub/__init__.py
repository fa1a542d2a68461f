"""crmhub's kernel. Plugin authors import from here only:

    from hub import Connector, EventDraft, hookimpl, schemas, errors
"""

from __future__ import annotations

from hub import errors, schemas
from hub.connector import Connector, InboundRequest, ParseContext, Reply
from hub.plugins import hookimpl
from hub.schemas import Campaign, EventDraft, Identity, QualityIssue, UnifiedEvent

__all__ = [
    "Campaign",
    "Connector",
    "EventDraft",
    "Identity",
    "InboundRequest",
    "ParseContext",
    "QualityIssue",
    "Reply",
    "UnifiedEvent",
    "errors",
    "hookimpl",
    "schemas",
]
