"""Registry values → contract §6: capital strings, status text, dates, and the risk-level rule."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

UNITS = {"亿": Decimal(10) ** 8, "万": Decimal(10) ** 4, "千": Decimal(1000), "": Decimal(1)}
CURRENCIES = (("人民币", "CNY"), ("美元", "USD"), ("港元", "HKD"), ("港币", "HKD"), ("欧元", "EUR"), ("日元", "JPY"),
              ("英镑", "GBP"), ("新台币", "TWD"), ("澳门元", "MOP"), ("元", "CNY"), ("CNY", "CNY"), ("RMB", "CNY"),
              ("USD", "USD"), ("HKD", "HKD"), ("EUR", "EUR"))
# Words before 元 other than 人民币 name another currency (加拿大元, 新加坡元): the catch-all 元 is not yuan then.
_UNLISTED_CURRENCY = re.compile(r"[^\W\d_]+元")
_CAPITAL_RE = re.compile(r"^\s*([0-9][0-9,，]*(?:\.[0-9]+)?)\s*(亿|万|千)?\s*(.*?)\s*$")
# Order matters: "吊销，未注销" is revoked, not cancelled.
STATUS_RULES = (("吊销", "revoked"), ("注销", "cancelled"), ("迁出", "moved"), ("清算", "liquidating"),
                ("停业", "liquidating"), ("存续", "active"), ("在业", "active"), ("在营", "active"),
                ("开业", "active"), ("正常", "active"))
HIGH_RISK_STATUS = {"revoked", "cancelled", "liquidating"}
MEDIUM_RISK_STATUS = {"moved", "unknown"}
HIGH_RISK_PENALTIES = 3
YOUNG_COMPANY_DAYS = 365


def parse_capital(text: Any, currency_hint: Any = None) -> dict[str, Any] | None:
    """"77800.32万人民币" → {"amount": 778003200, "currency": "CNY", "text": "77800.32万人民币"}; None if empty.

    The amount is in the currency's main unit (yuan), an int when whole; unreadable text keeps `text`
    with a null amount. A currency that cannot be read from the text falls back to `currency_hint`, then CNY.
    """
    if text is None or (isinstance(text, str) and not text.strip()) or isinstance(text, bool):
        return None
    raw = str(text).strip()
    match = _CAPITAL_RE.match(raw)
    amount: int | float | None = None
    rest = raw
    if match:
        try:
            value = Decimal(match.group(1).replace(",", "").replace("，", "")) * UNITS[match.group(2) or ""]
            value = value.quantize(Decimal("0.01"))
        except InvalidOperation:
            value = None
        rest = match.group(3)
        # Digits after the number ("1e400万", "100-200万") mean it was not the whole amount: unreadable.
        if value is not None and not any(ch.isdigit() for ch in rest):
            amount = int(value) if value == value.to_integral_value() else float(value)
    currency = next((code for name, code in CURRENCIES if name in rest.upper() or name in rest), None)
    if currency == "CNY" and _UNLISTED_CURRENCY.search(rest.replace("人民币", "")):
        # "100万加拿大元": a currency this table does not know, not yuan. Unreadable rather than wrong.
        return {"amount": None, "currency": None, "text": raw}
    if currency is None and isinstance(currency_hint, str) and currency_hint.strip():
        currency = next((code for name, code in CURRENCIES if name in currency_hint.upper() or name in currency_hint),
                        None)
    return {"amount": amount, "currency": currency or "CNY", "text": raw}


def parse_status(text: Any) -> str:
    """经营状态 text → active | revoked | cancelled | liquidating | moved | unknown."""
    if not isinstance(text, str):
        return "unknown"
    for needle, status in STATUS_RULES:
        if needle in text:
            return status
    lowered = text.lower()
    for word, status in (("revoke", "revoked"), ("cancel", "cancelled"), ("liquidat", "liquidating"),
                         ("moved", "moved"), ("active", "active")):
        if word in lowered:
            return status
    return "unknown"


def as_count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def risk_level(status: str, penalties: int | None, established_on: str | None, insured_employees: int | None,
               today: date) -> str:
    """The documented rule (docs/connectors/credit_registry.md):

    high   — revoked, cancelled or liquidating, or 3+ administrative penalties;
    medium — moved or unknown status, 1–2 penalties, established less than a year ago, or no insured employees;
    low    — otherwise.
    """
    if status in HIGH_RISK_STATUS or (penalties or 0) >= HIGH_RISK_PENALTIES:
        return "high"
    young = established_on is not None and (today - date.fromisoformat(established_on)).days < YOUNG_COMPANY_DAYS
    if status in MEDIUM_RISK_STATUS or (penalties or 0) > 0 or young or insured_employees == 0:
        return "medium"
    return "low"
