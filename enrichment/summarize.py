"""Pluggable call-summary extractors and the `call.summarized` draft (contract §5).

Extractors come from the `register_extractors(register)` hook: `register(name, factory)`,
`factory(settings)` → an object with `extract(lines, lexicons)` returning a
`CallSummary`. `CRMHUB_SUMMARY_EXTRACTOR` picks one (`rules` by default). When a chosen
remote extractor fails, the local rule extractor answers instead and the event carries
a quality issue, so a Hunyuan outage never loses a call's summary.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import pluggy

from hub.schemas import EventDraft, Identity, Quality, QualityIssue
from hub.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_EXTRACTOR = "rules"


class Extractor(Protocol):
    def extract(self, lines: list[Any], lexicons: Any) -> Any: ...


ExtractorFactory = Callable[[Settings], Extractor]


def builtin_extractors(register: Callable[[str, ExtractorFactory], None]) -> None:
    """The two built-ins: the local rule extractor and Tencent Hunyuan."""

    def rules(_settings: Settings) -> Extractor:
        from enrichment.summary import RuleExtractor

        return RuleExtractor()

    def hunyuan(settings: Settings) -> Extractor:
        from enrichment.summary import HunyuanExtractor

        # Same Tencent Cloud account as ASR; CRMHUB_ASR_PROTOCOL also applies (http for a local endpoint).
        return HunyuanExtractor(
            settings.tencentcloud_secret_id, settings.tencentcloud_secret_key,
            endpoint=settings.hunyuan_endpoint or None, protocol=settings.asr_protocol, model=settings.hunyuan_model,
        )

    register("rules", rules)
    register("hunyuan", hunyuan)


def extractor_factories(pm: pluggy.PluginManager) -> dict[str, ExtractorFactory]:
    """Every registered extractor by name; the first registration of a name wins."""
    found: dict[str, ExtractorFactory] = {}

    def register(name: str, factory: ExtractorFactory) -> None:
        found.setdefault(name, factory)

    pm.hook.register_extractors(register=register)
    if DEFAULT_EXTRACTOR not in found:
        builtin_extractors(register)
    return found


def make_lexicons(config: Mapping[str, Any] | None) -> Any:
    """The per-source lexicons (course catalogue, competitor list) as the extractor's `Lexicons`."""
    from enrichment.summary import Lexicons

    if not config:
        return Lexicons()
    try:
        if not isinstance(config, Mapping):
            raise TypeError(f"lexicons must be a mapping, got {type(config).__name__}")
        return Lexicons().merged(config)  # a source extends (or replaces) the default vocabularies
    except (ValueError, TypeError) as exc:
        log.warning("ignoring invalid lexicons in source config: %s", exc)
        return Lexicons()


def summarise(
    pm: pluggy.PluginManager, settings: Settings, transcript: list[dict[str, Any]], lexicons: Any
) -> tuple[dict[str, Any], str, list[QualityIssue]]:
    """Run the configured extractor; returns (summary dict, extractor name, quality issues)."""
    from enrichment.summary import TranscriptLine

    lines = [TranscriptLine(**line) for line in transcript]
    factories = extractor_factories(pm)
    name = settings.summary_extractor or DEFAULT_EXTRACTOR
    issues: list[QualityIssue] = []
    if name not in factories:
        issues.append(QualityIssue(field="summary", code="unknown_extractor",
                                   detail=f"no extractor {name!r}; used {DEFAULT_EXTRACTOR!r}"))
        name = DEFAULT_EXTRACTOR
    try:
        return summary_dict(factories[name](settings).extract(lines, lexicons)), name, issues
    except Exception as exc:
        if name == DEFAULT_EXTRACTOR:
            return _no_summary(name, exc, issues)
        log.warning("extractor %s failed, falling back to %s: %s", name, DEFAULT_EXTRACTOR, exc)
        issues.append(QualityIssue(field="summary", code="extractor_fallback", detail=_failure(name, exc)))
    name = DEFAULT_EXTRACTOR
    try:
        return summary_dict(factories[name](settings).extract(lines, lexicons)), name, issues
    except Exception as exc:
        return _no_summary(name, exc, issues)


def _no_summary(
    name: str, exc: Exception, issues: list[QualityIssue]
) -> tuple[dict[str, Any], str, list[QualityIssue]]:
    """No extractor could read the transcript: the event still carries it, with empty facts and the reason.

    Raising instead left the job polling Tencent every sweep until its result expired, transcript and all.
    """
    log.exception("extractor %s failed; storing the transcript without a summary", name)
    issues.append(QualityIssue(field="summary", code="extractor_failed", detail=_failure(name, exc)))
    return summary_dict({}), name, issues


def _failure(name: str, exc: Exception) -> str:
    return f"{name}: {exc.__class__.__name__}: {str(exc)[:200]}"


def summary_dict(summary: Any) -> dict[str, Any]:
    """A `CallSummary` (or a plugin's look-alike) as contract §5's `summary` object.

    A budget in another currency is a ValueError: `summarise` then falls back as for any failed extractor.
    """
    from enrichment.summary.models import as_cny

    data = summary.model_dump(mode="json") if hasattr(summary, "model_dump") else dict(summary)
    budget = data.get("budget")
    if isinstance(budget, Mapping):
        budget = {"min": budget.get("min"), "max": budget.get("max"),
                  "currency": as_cny(budget.get("currency")), "text": budget.get("text") or ""}
    else:
        budget = None
    return {
        "course": data.get("course"),
        "budget": budget,
        "decision_role": data.get("decision_role"),
        "competitors": list(data.get("competitors") or []),
    }


def summarized_draft(
    *,
    job_id: str,
    call_event_id: str,
    task_id: int | None,
    occurred_at: datetime,
    identities: list[Identity],
    transcript: list[dict[str, Any]],
    summary: dict[str, Any],
    extras: Mapping[str, Any] | None = None,
    issues: list[QualityIssue] | None = None,
    customer_id: uuid.UUID | None = None,
) -> EventDraft:
    """The `call.summarized` event: linked to the call, carrying the call's identities and customer (the only
    link when the call's number was masked)."""
    properties: dict[str, Any] = {
        "call_event_id": call_event_id,
        "asr_task_id": task_id,
        "transcript": transcript,
        "summary": summary,
        **dict(extras or {}),
    }
    return EventDraft(
        type="call.summarized",
        source_event_id=f"asr:{job_id}",
        occurred_at=occurred_at,
        identities=identities,
        properties=properties,
        quality=Quality(issues=issues or []),
        customer_hint=customer_id,
    )
