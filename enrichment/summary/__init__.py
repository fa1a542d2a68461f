"""Call summaries: the four facts a rep needs (course, budget, decision-maker, competitors) from a transcript.

`RuleExtractor` runs locally with no network; `HunyuanExtractor` asks Tencent Hunyuan. Both implement
`Extractor` and return a `CallSummary`, which dumps to contract §5's `summary` object.
"""

from __future__ import annotations

from .errors import ExtractionError, SummaryError
from .extractor import Extractor, RuleExtractor
from .lexicon import Lexicons
from .llm import HunyuanExtractor
from .models import Budget, CallSummary, TranscriptLine
from .numbers import MoneySpan, find_money, parse_money

__all__ = [
    "Budget",
    "CallSummary",
    "ExtractionError",
    "Extractor",
    "HunyuanExtractor",
    "Lexicons",
    "MoneySpan",
    "RuleExtractor",
    "SummaryError",
    "TranscriptLine",
    "find_money",
    "parse_money",
]
