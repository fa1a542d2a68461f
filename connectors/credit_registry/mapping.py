"""Provider result → `company.profile.updated` properties (contract §6) and the event draft."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date, datetime
from typing import Any

from hub import EventDraft, Identity
from hub.schemas import utcnow
from hub.values import CHINA_TZ, platform_date

from .normalise import as_count, parse_capital, parse_status, risk_level

log = logging.getLogger(__name__)

# The provider's own answer, kept with the profile (and its event) so fields read wrongly or not at all can be
# recovered; left out of the event's digest, so a provider's bookkeeping fields do not make a new event.
PROVIDER_RESULT = "provider_result"
# platforms.md §8 marks Qichacha's names for 实缴资本 and 参保人数 UNCONFIRMED: the first of these present is read,
# and a result with none of them is logged with the keys it has.
QCC_PAID_IN_KEYS = ("RecCap", "RealCapi", "PaidUpCapi", "PaidUpCapital", "PaidInCapital", "ActualCapi")
QCC_INSURED_KEYS = ("InsuredCount", "InsuredNum", "InsuredPersons", "InsuredPersonCount", "SocialStaffNum", "CbNum")


def from_tianyancha(uscc: str, r: dict[str, Any], today: date) -> dict[str, Any]:
    # penaltyCount is not in the documented base-info fields (the penalty API is UNCONFIRMED): read when present.
    return _props(uscc, name=r.get("name"), legal=r.get("legalPersonName"),
                  registered=parse_capital(r.get("regCapital"), r.get("regCapitalCurrency")),
                  paid_in=parse_capital(r.get("actualCapital"), r.get("actualCapitalCurrency")),
                  insured=as_count(r.get("socialStaffNum")), status_text=r.get("regStatus"),
                  established=platform_date(r.get("estiblishTime")), penalties=as_count(r.get("penaltyCount")),
                  today=today) | {PROVIDER_RESULT: {"provider": "tianyancha", "result": r}}


def from_qichacha(uscc: str, r: dict[str, Any], today: date) -> dict[str, Any]:
    paid_in = _first_present(r, QCC_PAID_IN_KEYS, "实缴资本")
    insured = _first_present(r, QCC_INSURED_KEYS, "参保人数")
    return _props(uscc, name=r.get("Name"), legal=r.get("OperName"), registered=parse_capital(r.get("RegistCapi")),
                  paid_in=parse_capital(paid_in), insured=as_count(insured),
                  status_text=r.get("Status"), established=platform_date(r.get("StartDate")),
                  penalties=as_count(r.get("PenaltyCount")), today=today) | {
                      PROVIDER_RESULT: {"provider": "qichacha", "result": r}}


def _first_present(result: dict[str, Any], keys: tuple[str, ...], what: str) -> Any:
    for key in keys:
        if result.get(key) not in (None, ""):
            log.info("qichacha %s read from %r", what, key)
            return result[key]
    log.warning("qichacha result has no %s under any of %s; it has %s", what, list(keys), sorted(result))
    return None


NO_CAPITAL: dict[str, Any] = {"amount": None, "currency": None, "text": None}


def _props(uscc: str, *, name: Any, legal: Any, registered: dict[str, Any] | None, paid_in: dict[str, Any] | None,
           insured: int | None, status_text: Any, established: str | None, penalties: int | None,
           today: date) -> dict[str, Any]:
    status = parse_status(status_text)
    return {
        "uscc": uscc, "name": name, "legal_representative": legal,
        # contract §6: registered_capital is always an object; paid_in_capital may be null
        "registered_capital": registered or NO_CAPITAL.copy(),
        "paid_in_capital": paid_in, "insured_employees": insured, "status": status,
        "status_text": status_text if isinstance(status_text, str) else None, "established_on": established,
        "penalties": penalties, "risk_level": risk_level(status, penalties, established, insured, today),
    }


def today_in_china(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(CHINA_TZ).date()


def profile_event(uscc: str, props: dict[str, Any], *, occurred_at: datetime | None = None) -> EventDraft:
    """A `company.profile.updated` draft; the same profile content always has the same source_event_id.

    surrogatepass: a registry answer holding a lone surrogate (`"\\ud800"` in its JSON) has no UTF-8 form, and the
    digest failed the lookup with a UnicodeEncodeError; the pipeline cleans such text out of the properties.
    """
    content = {k: v for k, v in props.items() if k != PROVIDER_RESULT}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return EventDraft(type="company.profile.updated", source_event_id=f"profile:{uscc}:{digest[:16]}",
                      occurred_at=occurred_at or utcnow(), identities=[Identity(type="uscc", value=uscc)],
                      properties=dict(props))
