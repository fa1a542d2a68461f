"""What the cheapest conceivable import of bench/import.py's file costs, against the same bare read (issue 8).

    python bench/import_floor.py [--rows 32756] [--repeat 3]

Not crmhub: a floor to judge the 8× target by. In one process it times python-calamine's bare read, then a
hand-cut import that does far less than crmhub's, all in Python:
  - each text cell: strip invisible and control characters with one regex, NFKC, collapse whitespace, flag
    formula-leading text; no per-field rules, no quality issues recorded, no formula detection in the sheet XML;
  - a phone checked by one regex (11-digit mobile), an email by one regex; no placeholder rules, no libraries;
  - identity: an in-memory dict from (kind, value) to customer id; no merges, no database reads;
  - storing: one SQLite transaction, executemany into three tables (events as JSON text, customers, identifiers
    with a unique key), in batches of 1,000 as the import does; no raw request, no hooks, no deliveries.
It prints each part's seconds and ratio to the bare read. If this floor alone is near 8×, an import that also
resolves identities safely (merge rules, placeholders, shared lines, audit), records every quality issue, finds
formulas, and runs every row through the shared pipeline cannot reach 8× in CPython.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import unicodedata
import uuid
from pathlib import Path

_INVISIBLE = re.compile("[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_KEYS = ("company", "name", "phone", "email", "uscc", "city", "industry", "note")
BATCH = 1_000


def _bench_import() -> object:
    spec = importlib.util.spec_from_file_location("bench_import", Path(__file__).with_name("import.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clean(text: str) -> tuple[str, bool]:
    cleaned = " ".join(unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).split())
    return cleaned, cleaned[:1] in "=+-@" and not cleaned[1:2].isdigit()


def _schema(db: sqlite3.Connection) -> None:
    db.executescript("""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
        CREATE TABLE events (id TEXT PRIMARY KEY, customer_id TEXT, type TEXT, payload TEXT);
        CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT, created_at REAL);
        CREATE TABLE identifiers (kind TEXT, value TEXT, customer_id TEXT, PRIMARY KEY (kind, value));
    """)


def floor_import(path: Path, db_path: Path) -> dict[str, float]:
    from python_calamine import CalamineWorkbook

    db = sqlite3.connect(db_path, isolation_level=None)
    _schema(db)
    owners: dict[tuple[str, str], str] = {}
    events: list[tuple[str, str, str, str]] = []
    customers: list[tuple[str, str, float]] = []
    identifiers: list[tuple[str, str, str]] = []
    timings = {"analyse": 0.0, "store": 0.0}

    def flush() -> None:
        started = time.perf_counter()
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?)", customers)
        db.executemany("INSERT OR IGNORE INTO identifiers VALUES (?, ?, ?)", identifiers)
        db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", events)
        db.execute("COMMIT")
        events.clear(), customers.clear(), identifiers.clear()
        timings["store"] += time.perf_counter() - started

    wb = CalamineWorkbook.from_path(str(path))
    rows = iter(wb.get_sheet_by_index(0).iter_rows())
    next(rows)  # the header
    started = time.perf_counter()
    for cells in rows:
        record: dict[str, object] = {}
        issues: list[str] = []
        for key, cell in zip(_KEYS, cells, strict=False):
            if isinstance(cell, str):
                value, formula = _clean(cell)
                if formula:
                    issues.append(f"formula:{key}")
                record[key] = value
            else:
                record[key] = cell
        keys = []
        phone = str(record.get("phone") or "")
        if _MOBILE.fullmatch(phone):
            keys.append(("phone", "+86" + phone))
        email = str(record.get("email") or "")
        if _EMAIL.fullmatch(email):
            keys.append(("email", email.lower()))
        if not keys:
            continue
        owner = next((owners[k] for k in keys if k in owners), None)
        if owner is None:
            owner = str(uuid.uuid4())
            customers.append((owner, str(record.get("name") or ""), time.time()))
        for k in keys:
            if k not in owners:
                owners[k] = owner
                identifiers.append((k[0], k[1], owner))
        payload = json.dumps({"type": "record.imported", "properties": record, "issues": issues}, ensure_ascii=False)
        events.append((str(uuid.uuid4()), owner, "record.imported", payload))
        if len(events) >= BATCH:
            timings["analyse"] += time.perf_counter() - started
            flush()
            started = time.perf_counter()
    timings["analyse"] += time.perf_counter() - started
    flush()
    wb.close()
    db.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32_756)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench = _bench_import()
    with tempfile.TemporaryDirectory(prefix="crmhub-floor-") as tmp:
        xlsx = Path(tmp) / "legacy.xlsx"
        bench.generate_xlsx(xlsx, args.rows)  # type: ignore[attr-defined]
        for n in range(args.repeat):
            reads = [bench.bare_read(xlsx)[0] for _ in range(3)]  # type: ignore[attr-defined]
            read = statistics.median(reads)
            started = time.perf_counter()
            parts = floor_import(xlsx, Path(tmp) / f"floor{n}.db")
            total = time.perf_counter() - started
            print(f"run {n + 1}: bare read {read:.3f} s (median of 3); "
                  f"floor import {total:.3f} s = {total / read:.1f}× "
                  f"(reading+cleaning+checking {parts['analyse']:.3f} s = {parts['analyse'] / read:.1f}×, "
                  f"storing {parts['store']:.3f} s = {parts['store'] / read:.1f}×)", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
