"""Per-field accuracy of the rule extractor on the labelled call transcripts.

Usage: python bench/summary_eval.py [--misses] [--data PATH]

Scoring (issue 7): course by containment either way (case-insensitive), budget with both ends within
5% (None equals None), decision role by containment, competitors as sets after mapping aliases to
canonical names with the default lexicon. "overall" is the mean of the four fields; "all four" is the
share of calls with every field right. Always exits 0: this reports, CI decides.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from enrichment.summary import CallSummary, Lexicons, RuleExtractor, TranscriptLine  # noqa: E402

DATA = ROOT / "tests" / "data" / "call_transcripts.json"
FIELDS = ("course", "budget", "decision_role", "competitors")
TOLERANCE = 0.05


def contains_either_way(expected: str | None, predicted: str | None) -> bool:
    if expected is None or predicted is None:
        return expected is None and predicted is None
    e, p = expected.casefold(), predicted.casefold()
    return e in p or p in e


def close(expected: float | None, predicted: float | None) -> bool:
    if expected is None or predicted is None:
        return expected is None and predicted is None
    return abs(predicted - expected) <= TOLERANCE * abs(expected)


def budget_ok(expected: dict[str, Any] | None, predicted: dict[str, Any] | None) -> bool:
    if expected is None or predicted is None:
        return expected is None and predicted is None
    return close(expected["min"], predicted["min"]) and close(expected["max"], predicted["max"])


def competitors_ok(expected: list[str], predicted: list[str], lexicons: Lexicons) -> bool:
    return {lexicons.canonical_competitor(n).casefold() for n in expected} == {
        lexicons.canonical_competitor(n).casefold() for n in predicted
    }


def score(expected: dict[str, Any], summary: CallSummary, lexicons: Lexicons) -> dict[str, bool]:
    """Which of the four fields `summary` gets right against one call's labels."""
    got = summary.model_dump()
    return {
        "course": contains_either_way(expected["course"], got["course"]),
        "budget": budget_ok(expected["budget"], got["budget"]),
        "decision_role": contains_either_way(expected["decision_role"], got["decision_role"]),
        "competitors": competitors_ok(expected["competitors"], got["competitors"], lexicons),
    }


def evaluate(
    calls: list[dict[str, Any]], extract: Callable[[list[TranscriptLine], Lexicons], CallSummary]
) -> tuple[dict[str, float], list[tuple[str, str, Any, Any]]]:
    """Accuracy per field (plus "overall" and "all_four") and the misses as (id, field, expected, got)."""
    lexicons = Lexicons()
    hits = dict.fromkeys(FIELDS, 0)
    perfect = 0
    misses: list[tuple[str, str, Any, Any]] = []
    for call in calls:
        lines = [TranscriptLine.model_validate(line) for line in call["lines"]]
        summary = extract(lines, lexicons)
        result = score(call["expected"], summary, lexicons)
        perfect += all(result.values())
        for name, ok in result.items():
            hits[name] += ok
            if not ok:
                misses.append((call["id"], name, call["expected"][name], summary.model_dump()[name]))
    n = max(len(calls), 1)
    accuracy = {name: hits[name] / n for name in FIELDS}
    accuracy["overall"] = sum(accuracy[name] for name in FIELDS) / len(FIELDS)
    accuracy["all_four"] = perfect / n
    return accuracy, misses


def load(path: Path = DATA) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--misses", action="store_true", help="list every wrong field")
    args = parser.parse_args(argv)
    calls = load(args.data)
    extractor = RuleExtractor()
    started = time.perf_counter()
    accuracy, misses = evaluate(calls, extractor.extract)
    elapsed = time.perf_counter() - started
    print(f"RuleExtractor on {len(calls)} labelled calls ({args.data.name}), {elapsed:.2f}s incl. jieba start-up")
    for name in (*FIELDS, "overall", "all_four"):
        print(f"  {name:<14} {accuracy[name]:.3f}")
    if args.misses:
        for call_id, name, expected, got in misses:
            print(f"  miss {call_id} {name}: expected {expected!r}, got {got!r}")
    else:
        print(f"  ({len(misses)} wrong fields; --misses lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
