"""Extractors turn a transcript into a `CallSummary`; `RuleExtractor` is the local, offline default.

Why a protocol: the hub picks an extractor by setting (rules, or Hunyuan in `llm.py`) and a plugin may
bring its own; all they share is `extract(lines, lexicons)`. The rule extractor needs no network and no
credentials, so every installation gets summaries, and its behaviour is pinned by the labelled set in
`tests/data/call_transcripts.json` (run `python bench/summary_eval.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

from . import facts
from .dialogue import turns_of
from .lexicon import Lexicons
from .models import CallSummary, TranscriptLine
from .segment import TermMatcher


@runtime_checkable
class Extractor(Protocol):
    """Anything that reads a call's transcript into the four facts."""

    def extract(self, lines: list[TranscriptLine], lexicons: Lexicons) -> CallSummary:
        """Summarise `lines` (in time order), using `lexicons` for the source's vocabulary."""
        ...


@dataclass(frozen=True)
class _Matchers:
    courses: TermMatcher
    competitors: TermMatcher
    roles: TermMatcher


class RuleExtractor:
    """Speaker-aware rules over jieba-segmented text; deterministic, offline, a few ms per call.

    What it reads: the course the customer asks about or confirms; the budget the customer states
    (never the agent's price quotes; the last statement wins); who decides, from the customer's words
    ("我得问问我老公") or a decision question they answered; competitors the customer mentions and
    does not rule out ("没考虑过新东方").
    """

    def extract(self, lines: list[TranscriptLine], lexicons: Lexicons) -> CallSummary:
        matchers = _matchers(lexicons)
        turns = turns_of(sorted(lines, key=lambda line: line.start_ms))
        return CallSummary(
            course=facts.course(turns, matchers.courses, matchers.competitors),
            budget=facts.budget(turns, matchers.competitors),
            decision_role=facts.decision_role(turns, matchers.roles),
            competitors=facts.competitors(turns, matchers.competitors),
        )


def _matchers(lexicons: Lexicons) -> _Matchers:
    return _matchers_for(lexicons.key())


@lru_cache(maxsize=32)
def _matchers_for(key: tuple[tuple[tuple[str, str], ...], ...]) -> _Matchers:
    courses, competitors, roles = (dict(part) for part in key)
    return _Matchers(
        courses=TermMatcher(courses),
        competitors=TermMatcher(competitors),
        roles=TermMatcher(roles, teach_jieba=False),
    )
