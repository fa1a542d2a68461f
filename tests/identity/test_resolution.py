"""Resolution rules (contract §4): match, attach, merge, placeholders, shared lines, limits, accounts, traits."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from hub.models import EventRow, SourceRow
from hub.pipeline import store_drafts
from hub.runtime import Hub
from hub.schemas import Identity
from identity.models import AccountMemberRow, CustomerRow, HistoryRow, IdentityRow
from identity.views import find_customer
from tests.identity.conftest import T0, customer_of, draft, event_row, ingest


def history(hub: Hub, action: str | None = None) -> list[HistoryRow]:
    with hub.sessions() as s:
        stmt = select(HistoryRow).order_by(HistoryRow.id)
        if action:
            stmt = stmt.where(HistoryRow.action == action)
        return list(s.scalars(stmt))


def customer(hub: Hub, cid: object) -> CustomerRow:
    with hub.sessions() as s:
        row = s.get(CustomerRow, cid)
        assert row is not None
        return row


def test_same_phone_in_different_formats_is_one_customer(quiet_hub: Hub) -> None:
    a = customer_of(quiet_hub, draft(("phone", "13912345678")))
    b = customer_of(quiet_hub, draft(("phone", "+86 139-1234-5678"), ("douyin_open_id", "d1")))
    c = customer_of(quiet_hub, draft(("phone", "0086 139 1234 5678")))
    assert a == b == c is not None
    assert [h.reason for h in history(quiet_hub, "attach")] == ["seen_with_customer:message.received"]


def test_merge_keeps_oldest_and_old_id_points_to_survivor(quiet_hub: Hub) -> None:
    first = customer_of(quiet_hub, draft(("douyin_open_id", "d1")))
    second = customer_of(quiet_hub, draft(("xhs_user_id", "x1")))
    assert first != second
    joined = customer_of(quiet_hub, draft(("douyin_open_id", "d1"), ("xhs_user_id", "x1")))
    assert joined == first
    assert customer(quiet_hub, second).merged_into == first
    (merge,) = history(quiet_hub, "merge")
    assert merge.customer_ids == [str(first), str(second)]
    assert (merge.identity_type, merge.identity_value) == ("xhs_user_id", "x1")
    assert merge.reason == "shared_identifier:xhs_user_id"
    with quiet_hub.sessions() as s:
        merged = s.scalars(select(EventRow).where(EventRow.type == "customer.merged")).one()
        assert merged.customer_id == first and merged.source == "identity"
        assert merged.data["properties"]["merged_customer_ids"] == [str(second)]
        assert merged.data["properties"]["surviving_customer_id"] == str(first)
        owners = set(s.scalars(select(IdentityRow.customer_id)))
    assert owners == {first}


def test_chained_merges_point_straight_at_the_survivor(quiet_hub: Hub) -> None:
    a = customer_of(quiet_hub, draft(("douyin_open_id", "d1")))
    b = customer_of(quiet_hub, draft(("xhs_user_id", "x1")))
    c = customer_of(quiet_hub, draft(("pos_member_id", "p1")))
    customer_of(quiet_hub, draft(("xhs_user_id", "x1"), ("pos_member_id", "p1")))  # c into b
    customer_of(quiet_hub, draft(("douyin_open_id", "d1"), ("pos_member_id", "p1")))  # b into a
    assert customer(quiet_hub, b).merged_into == a
    assert customer(quiet_hub, c).merged_into == a


def test_account_identifiers_never_merge_customers(quiet_hub: Hub) -> None:
    uscc = "91350100M000100Y43"
    alice = customer_of(quiet_hub, draft(("phone", "13912345678"), ("uscc", uscc), traits={"company": "福州某某科技"}))
    bob = customer_of(quiet_hub, draft(("phone", "13987654321"), ("uscc", uscc)))
    assert alice != bob
    (order,) = ingest(quiet_hub, draft(("erp_customer_code", "C-001"), ("uscc", uscc), type="order.created"))
    assert order.customer_id is None and order.account_id is not None
    with quiet_hub.sessions() as s:
        members = set(s.scalars(select(AccountMemberRow.customer_id).where(
            AccountMemberRow.account_id == order.account_id)))
    assert members == {alice, bob}


def test_a_placeholder_on_an_event_is_a_quality_issue_the_report_counts(quiet_hub: Hub) -> None:
    from hub.quality_report import build_report

    (row,) = ingest(quiet_hub, draft(("phone", "13800000000"), ("email", "p@example.com")))
    issues = row.data["quality"]["issues"]
    assert [(i["field"], i["code"]) for i in issues] == [("identities.phone", "placeholder")]
    assert {"type": "phone", "value": "+8613800000000"} in row.data["identities"]  # kept as sent, never matched
    assert build_report(quiet_hub)["invalid_identifiers"]["placeholder"] == 1


def test_a_configured_placeholder_is_flagged_like_a_built_in_one(quiet_hub: Hub) -> None:
    # quiet_hub configures CRMHUB_IDENTITY_PLACEHOLDERS=13912340000; the event sends it in E.164 form.
    (row,) = ingest(quiet_hub, draft(("phone", "+86 139 1234 0000"), ("email", "q@example.com")))
    issues = [(i["field"], i["code"]) for i in row.data["quality"]["issues"]]
    assert issues == [("identities.phone", "placeholder")]


def test_placeholders_are_never_matched(quiet_hub: Hub) -> None:
    a = customer_of(quiet_hub, draft(("phone", "13333333333"), ("email", "a@example.com")))
    b = customer_of(quiet_hub, draft(("phone", "13333333333"), ("email", "b@example.com")))
    c = customer_of(quiet_hub, draft(("phone", "13912340000"), ("email", "c@example.com")))  # configured extra
    d = customer_of(quiet_hub, draft(("phone", "13912340000"), ("email", "d@example.com")))
    assert len({a, b, c, d}) == 4
    # Only placeholders: each event gets a customer of its own, with no identifier to join anyone by.
    e = customer_of(quiet_hub, draft(("email", "null")))
    f = customer_of(quiet_hub, draft(("email", "null")))
    assert e is not None and f is not None and len({a, b, c, d, e, f}) == 6
    with quiet_hub.sessions() as s:
        assert not s.scalars(select(IdentityRow).where(IdentityRow.type == "phone")).all()


def test_service_line_is_attached_but_never_merges(quiet_hub: Hub) -> None:
    a = customer_of(quiet_hub, draft(("phone", "4008123123"), ("email", "a@example.com")))
    b = customer_of(quiet_hub, draft(("phone", "400-812-3123"), ("email", "b@example.com")))
    assert a != b
    with quiet_hub.sessions() as s:
        holders = s.scalars(select(IdentityRow).where(IdentityRow.value == "+864008123123")).all()
    assert {h.customer_id for h in holders} == {a, b} and all(h.shared for h in holders)
    (refused,) = history(quiet_hub, "merge_refused")
    assert refused.reason == "shared_line" and set(refused.customer_ids) == {str(a), str(b)}


def test_household_landline_keeps_two_people_apart(quiet_hub: Hub) -> None:
    landline = "010-62345678"
    mum = customer_of(quiet_hub, draft(("phone", "13912345678"), ("phone", landline)))
    son = customer_of(quiet_hub, draft(("phone", "13987654321"), ("phone", landline)))
    assert mum != son
    # An event with only the landline goes to whoever used it last, and merges nothing.
    assert customer_of(quiet_hub, draft(("phone", landline))) == son
    assert customer(quiet_hub, mum).merged_into is None
    # A line only one customer ever used still identifies them when it is all an event has.
    solo = customer_of(quiet_hub, draft(("phone", "021-54321098"), ("email", "solo@example.com")))
    assert customer_of(quiet_hub, draft(("phone", "02154321098"))) == solo


def test_a_line_follows_the_customer_who_used_it_last_however_soon(quiet_hub: Hub) -> None:
    """Found by test_stateful.py: a use less than a second after the line's last one did not count, so an event
    with only the landline went to the son although his mother had used it since."""
    landline = ("phone", "010-62345678")
    mum = customer_of(quiet_hub, draft(("phone", "13912345678"), landline))
    son = customer_of(quiet_hub, draft(("phone", "13987654321"), landline))
    assert customer_of(quiet_hub, draft(("phone", "13912345678"), landline)) == mum != son
    assert customer_of(quiet_hub, draft(landline)) == mum
    # The same within one batch (an import stores a thousand rows in well under a second).
    son_again, only_line = draft(("phone", "13987654321"), landline), draft(landline)
    with quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, [son_again, only_line], source="pos", source_id=None)
    assert event_row(quiet_hub, only_line.source_event_id).customer_id == son


def test_a_merge_keeps_the_later_use_of_a_line_both_customers_held(quiet_hub: Hub) -> None:
    """Found by test_stateful.py: merging two holders of a line kept the survivor's row with its own, older
    `last_seen`, so the line's next event went to a third holder instead of the person who used it last."""
    landline = ("phone", "010-62345678")
    mum = customer_of(quiet_hub, draft(("phone", "13912345678"), landline))
    son = customer_of(quiet_hub, draft(("phone", "13987654321"), landline))
    lodger = customer_of(quiet_hub, draft(("phone", "13712345679"), landline))
    assert customer_of(quiet_hub, draft(("phone", "13987654321"), landline)) == son  # the son used it last
    assert customer_of(quiet_hub, draft(("phone", "13912345678"), ("phone", "13987654321"))) == mum  # son → mum
    with quiet_hub.sessions() as s:
        assert find_customer(s, Identity(type="phone", value="+861062345678")).id == mum  # type: ignore[union-attr]
    assert customer_of(quiet_hub, draft(landline)) == mum != lodger


def test_a_merge_in_a_batch_keeps_the_later_use_of_a_line(quiet_hub: Hub) -> None:
    """As above, with the son's use, the merge and the line's next event in one batch (the preload's rows)."""
    landline = ("phone", "010-62345678")
    mum = customer_of(quiet_hub, draft(("phone", "13912345678"), landline))
    customer_of(quiet_hub, draft(("phone", "13987654321"), landline))
    lodger = customer_of(quiet_hub, draft(("phone", "13712345679"), landline))
    only_line = draft(landline)
    with quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, [draft(("phone", "13987654321"), landline),
                                          draft(("phone", "13912345678"), ("phone", "13987654321")), only_line],
                     source="pos", source_id=None)
    assert event_row(quiet_hub, only_line.source_event_id).customer_id == mum != lodger


def test_a_line_attached_to_a_known_customer_is_in_the_history(quiet_hub: Hub) -> None:
    """Found by test_stateful.py: a landline new to an existing customer was attached with no history entry, yet
    it alone routes the line's next event to that customer; the history must explain that."""
    mobile, landline = ("phone", "13912345678"), ("phone", "010-62345678")
    cid = customer_of(quiet_hub, draft(mobile))
    (row,) = ingest(quiet_hub, draft(mobile, landline))
    (attach,) = history(quiet_hub, "attach")
    assert (attach.reason, attach.customer_ids, attach.event_id) == (
        "seen_with_customer:message.received", [str(cid)], row.id)
    assert (attach.identity_type, attach.identity_value) == ("phone", "+861062345678")
    assert customer_of(quiet_hub, draft(landline)) == cid
    assert len(history(quiet_hub)) == 1  # a line the customer already holds is no new decision


def test_web_user_id_limit_demotes_the_anonymous_id(quiet_hub: Hub) -> None:
    u1 = customer_of(quiet_hub, draft(("web_user_id", "u1"), ("web_anonymous_id", "anon")))
    u2 = customer_of(quiet_hub, draft(("web_user_id", "u2"), ("web_anonymous_id", "anon")))
    assert u1 != u2
    (refused,) = history(quiet_hub, "merge_refused")
    assert refused.reason == "limit_exceeded:web_user_id"
    assert (refused.identity_type, refused.identity_value) == ("web_anonymous_id", "anon")
    assert customer_of(quiet_hub, draft(("web_anonymous_id", "anon"))) == u1


def test_five_emails_then_a_sixth_is_refused(quiet_hub: Hub) -> None:
    cid = customer_of(quiet_hub, draft(("phone", "13912345678")))
    for n in range(5):
        assert customer_of(quiet_hub, draft(("phone", "13912345678"), ("email", f"e{n}@example.com"))) == cid
    assert customer_of(quiet_hub, draft(("phone", "13912345678"), ("email", "e5@example.com"))) == cid
    with quiet_hub.sessions() as s:
        emails = s.scalars(select(IdentityRow.value).where(IdentityRow.type == "email")).all()
    assert len(emails) == 5 and "e5@example.com" not in emails
    assert [h.reason for h in history(quiet_hub, "merge_refused")] == ["limit_exceeded:email"]


def test_limit_blocks_a_merge_of_two_customers(quiet_hub: Hub) -> None:
    a = customer_of(quiet_hub, draft(("web_user_id", "u1"), ("phone", "13912345678")))
    b = customer_of(quiet_hub, draft(("web_user_id", "u2"), ("email", "b@example.com")))
    c = customer_of(quiet_hub, draft(("phone", "13912345678"), ("email", "b@example.com")))
    assert c == a and customer(quiet_hub, b).merged_into is None
    assert history(quiet_hub, "merge_refused")[0].customer_ids == [str(a), str(b)]


def test_a_landline_does_not_count_against_the_phone_limit(quiet_hub: Hub) -> None:
    """Weak lines are attached without counting against the per-type limit: an office switchboard (written with
    its extension, read as the switchboard's number) must not cost a member one of their five phones."""
    email = ("email", "a@example.com")
    cid = customer_of(quiet_hub, draft(email, ("phone", "13912345670")))
    for phone in ("13912345671", "13912345672", "13912345673", "010-62345678转801"):
        assert customer_of(quiet_hub, draft(email, ("phone", phone))) == cid
    assert customer_of(quiet_hub, draft(email, ("phone", "13912345674"))) == cid  # the 5th mobile
    assert not history(quiet_hub, "merge_refused")
    assert customer_of(quiet_hub, draft(email, ("phone", "13912345675"))) != cid  # a 6th is still refused
    assert [h.reason for h in history(quiet_hub, "merge_refused")] == ["limit_exceeded:phone"]
    with quiet_hub.sessions() as s:
        phones = s.scalars(select(IdentityRow.value).where(IdentityRow.customer_id == cid,
                                                           IdentityRow.type == "phone")).all()
    assert len(phones) == 6 and "+861062345678" in phones


def test_merges_chained_in_one_batch_point_straight_at_the_survivor(quiet_hub: Hub) -> None:
    """b merges into a, then a into z, in one transaction: b must name z, not a (a merged-away customer)."""
    z = customer_of(quiet_hub, draft(("douyin_open_id", "z1")))
    a = customer_of(quiet_hub, draft(("xhs_user_id", "a1")))
    b = customer_of(quiet_hub, draft(("pos_member_id", "b1")))
    with quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, [draft(("xhs_user_id", "a1"), ("pos_member_id", "b1")),
                                          draft(("douyin_open_id", "z1"), ("xhs_user_id", "a1"))],
                     source="pos", source_id=None)
    assert customer(quiet_hub, a).merged_into == z
    assert customer(quiet_hub, b).merged_into == z
    assert [m.customer_ids for m in history(quiet_hub, "merge")] == [[str(a), str(b)], [str(z), str(a)]]


def test_traits_latest_non_empty_wins_with_source_and_time(quiet_hub: Hub) -> None:
    phone = ("phone", "13912345678")
    ingest(quiet_hub, draft(phone, at=T0.replace(day=5), traits={"name": "张三", "city": "福州"}), source="pos")
    ingest(quiet_hub, draft(phone, at=T0.replace(day=2), traits={"name": "老张"}), source="erp")  # older: loses
    (row,) = ingest(quiet_hub, draft(phone, at=T0.replace(day=9), traits={"city": "厦门", "name": ""}),
                    source="douyin")
    traits = customer(quiet_hub, row.customer_id).traits
    assert traits["name"]["value"] == "张三" and traits["name"]["source"] == "pos"
    assert traits["city"] == {"value": "厦门", "source": "douyin", "at": T0.replace(day=9).isoformat(),
                              "event_id": str(row.id)}
    got = customer(quiet_hub, row.customer_id)
    assert got.last_activity_at == T0.replace(day=9) and got.last_source == "douyin"


def test_an_event_without_identifiers_still_belongs_to_a_customer(quiet_hub: Hub) -> None:
    """Contract §4: customer_id is null only for an event that carries account identifiers alone."""
    masked = customer_of(quiet_hub, draft(type="call.completed", traits={"name": "来电客户"}))
    walk_in = customer_of(quiet_hub, draft(("pos_member_id", "-1"), type="purchase.completed"))
    assert masked is not None and walk_in is not None and masked != walk_in
    assert customer(quiet_hub, masked).traits["name"]["value"] == "来电客户"
    with quiet_hub.sessions() as s:
        assert not s.scalars(select(IdentityRow).where(IdentityRow.customer_id.in_([masked, walk_in]))).all()
    (order,) = ingest(quiet_hub, draft(("erp_customer_code", "C-9"), type="order.created"))
    assert order.customer_id is None and order.account_id is not None


def test_a_hub_made_event_without_identifiers_follows_its_customer_hint(quiet_hub: Hub) -> None:
    """The summary of a masked call belongs to the call's customer, also after that customer was merged."""
    call = customer_of(quiet_hub, draft(type="call.completed"))
    other = customer_of(quiet_hub, draft(("phone", "13912345678")))
    summary = draft(type="call.summarized").model_copy(update={"customer_hint": call})
    (row,) = ingest(quiet_hub, summary, source="enrichment")
    assert row.customer_id == call
    with quiet_hub.transaction() as session:  # the call's customer is merged away
        session.get(CustomerRow, call).merged_into = other
    later = draft(type="call.summarized").model_copy(update={"customer_hint": call})
    (row,) = ingest(quiet_hub, later, source="enrichment")
    assert row.customer_id == other
    # A hint on an event from an inbound source is ignored: platforms cannot pick customers.
    with quiet_hub.transaction() as session:
        store_drafts(quiet_hub, session, [draft(type="call.completed").model_copy(update={"customer_hint": other})],
                     source="pos", source_id=source_id(quiet_hub))
    with quiet_hub.sessions() as session:
        latest = session.scalars(select(EventRow).order_by(EventRow.seq.desc())).first()
    assert latest is not None and latest.customer_id not in (None, other)


def source_id(hub: Hub) -> uuid.UUID:
    with hub.transaction() as session:
        row = SourceRow(connector="pos", name="pos-test", config_sealed="")
        session.add(row)
        session.flush()
        return row.id
