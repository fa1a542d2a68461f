"""Benchmark: import a 32,756-row dirty legacy export, against python-calamine's bare read of the same file.

    python bench/import.py [--rows 32756] [--csv-rows N] [--keep DIR]

Generates the file (invisible characters, formula residue — real formulas and `=VLOOKUP(...)` text —, bad phones
and emails, short company names, exact duplicates, a merged-cell block), times the bare calamine read, then runs
`crmhub import` logic in a child process on a fresh SQLite database and reports seconds, rows/s and the child's
peak RSS. It also times the connector's reading, cleaning and checking alone (no database), a lower bound
for the import. Targets (issue 8): import ≤ 8× the bare read, peak RSS ≤ 300 MB; a 1,000,000-row CSV ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HEADER = ["客户名称", "联系人", "手机号", "邮箱", "统一社会信用代码", "城市", "行业", "备注"]
CITIES = ["北京", "上海", "深圳", "广州", "杭州", "成都", "武汉", "南京"]
INDUSTRIES = ["教育培训", "制造业", "零售", "互联网", "医疗"]
USCC = ["91440300708461136T", "91110000600037341L", "91330100799655058B"]
BAD_EVERY = 18  # ~1 row in 18 is dirty: 32,756 / 18 ≈ 1,820 (the seed saw 1,842)


def _row(i: int, rng: random.Random) -> list[object]:
    phone = f"1{rng.choice('3589')}{rng.randrange(10**9):09d}"
    row: list[object] = [f"{rng.choice(CITIES)}某某科技有限公司{i % 5000}", f"客户{i}", phone, f"user{i}@example.com",
                         rng.choice(USCC), rng.choice(CITIES), rng.choice(INDUSTRIES), ""]
    kind = i % BAD_EVERY
    if i % BAD_EVERY == 0 or i % 997 == 0:
        kind = (i // BAD_EVERY) % 7
        if kind == 0:
            row[1] = f"客户\u200e{i}"  # invisible character (kept)
        elif kind == 1:
            row[0] = "=VLOOKUP(A2,Sheet2!A:B,2,0)"  # formula residue as text in a key field
        elif kind == 2:
            row[2] = "1380013800"  # bad phone; email remains
        elif kind == 3:
            row[3] = "user@@example"  # bad email; phone remains
        elif kind == 4:
            row[0] = "腾讯"  # short company name
        elif kind == 5:
            row[5] = "=VLOOKUP(B2,城市表!A:B,2,0)"  # a real formula cell (non-key field)
        else:
            row[2], row[3] = "12345", "bad@"  # no usable identity
    return row


def generate_xlsx(path: Path, rows: int, seed: int = 8) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    rng = random.Random(seed)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("客户")
    ws.append(HEADER)
    previous: list[object] = []
    for i in range(rows):
        row = previous if i % 250 == 249 else _row(i, rng)  # exact duplicates
        previous = row
        cells = []
        for col, value in enumerate(row):
            cell = WriteOnlyCell(ws, value=value)
            if isinstance(value, str) and value.startswith("=") and col != 5:
                cell.data_type = "s"  # text residue, not a formula
            cells.append(cell)
        ws.append(cells)
    wb.save(path)
    _add_merged_block(path, "F101:F105")


def _add_merged_block(path: Path, ref: str) -> None:
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = data.replace(b"</sheetData>", f'</sheetData><mergeCells count="1"><mergeCell ref="{ref}"/>'
                                    "</mergeCells>".encode(), 1)
            dst.writestr(item, data)
    tmp.replace(path)


def generate_csv(path: Path, rows: int, seed: int = 8) -> None:
    import csv

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(["" if v is None else v for v in _row(i, rng)])


def bare_read(path: Path) -> tuple[float, int]:
    from python_calamine import CalamineWorkbook

    started = time.perf_counter()
    wb = CalamineWorkbook.from_path(str(path))
    count = sum(1 for _ in wb.get_sheet_by_index(0).iter_rows())
    wb.close()
    return time.perf_counter() - started, count


def analyse_only(path: Path) -> float:
    """Seconds to read, clean and check every row as the import does, without the database (a lower bound)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from connectors.spreadsheet.importfile import ImportFile
    from hub.gcpolicy import settle_gc

    settle_gc()  # as in the import
    started = time.perf_counter()
    opened = ImportFile(str(path))
    try:
        for _ in opened.batches():
            pass
    finally:
        opened.close()
    return time.perf_counter() - started


def child(path: str, workdir: str) -> None:
    """Runs in the measured subprocess: a fresh hub on SQLite, then the import."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from hub.db import Base
    from hub.gcpolicy import settle_gc
    from hub.importer import run_import
    from hub.plugins import load_plugins, make_plugin_manager
    from hub.runtime import Hub, set_hub
    from hub.settings import Settings

    settings = Settings(_env_file=None, database_url=f"sqlite:///{workdir}/bench.db", secret_key="bench",  # type: ignore[call-arg]
                        admin_token="bench", data_dir=Path(workdir) / "data", broker_url="")
    pm = make_plugin_manager()
    load_plugins(pm, None, entry_points=False)
    for name in ("identity.models", "webhooks.models", "enrichment.models"):
        try:
            __import__(name)
        except ImportError:
            pass
    hub = Hub(settings, pm=pm)
    Base.metadata.create_all(hub.engine)
    set_hub(hub)
    hub.start()
    settle_gc()  # as `crmhub import` does
    report = run_import(hub, path, source_name="bench")
    hub.runner.join(timeout=600)
    hub.stop()
    print(json.dumps(report, ensure_ascii=False))


def measure(path: Path, workdir: Path) -> tuple[dict[str, object], float, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), str(workdir)], capture_output=True,
                          text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"import failed:\n{proc.stderr[-3000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32_756)
    parser.add_argument("--csv-rows", type=int, default=0, help="also import a CSV of N rows (peak RSS target)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the generated files here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
    try:
        xlsx = workdir / "legacy.xlsx"
        generate_xlsx(xlsx, args.rows)
        read_s, read_rows = bare_read(xlsx)
        report, wall_s, peak_mb = measure(xlsx, workdir / "x")
        analyse_s = analyse_only(xlsx)
        seconds = float(report["seconds"])  # type: ignore[arg-type]
        print(f"xlsx: {args.rows} rows ({xlsx.stat().st_size / 1e6:.1f} MB)")
        print(f"  bare calamine read: {read_s:.3f}s ({read_rows} rows)")
        print(f"  read, clean and check rows, no database: {analyse_s:.2f}s ({analyse_s / read_s:.1f}x the read)")
        print(f"  import: {seconds:.2f}s ({wall_s:.2f}s wall with start-up), {args.rows / seconds:,.0f} rows/s")
        print(f"  ratio import/read: {seconds / read_s:.1f}x (target <= 8x)")
        print(f"  peak RSS (child): {peak_mb:.0f} MB (target <= 300 MB)")
        print(f"  report: imported {report['imported']}, quarantined {report['quarantined']}, "
              f"duplicates {report['duplicates']}, merged_cells {report['merged_cells']}, issues {report['issues']}")
        if args.csv_rows:
            csv_path = workdir / "big.csv"
            generate_csv(csv_path, args.csv_rows)
            report, wall_s, peak_mb = measure(csv_path, workdir / "c")
            print(f"csv: {args.csv_rows} rows ({csv_path.stat().st_size / 1e6:.1f} MB): import {report['seconds']}s, "
                  f"peak RSS (max over children) {peak_mb:.0f} MB (target <= 400 MB)")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(xlsx, args.keep / xlsx.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
