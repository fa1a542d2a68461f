"""identity.pending: buffered customers and claims are written before anything could miss them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from hub.errors import RetryableError
from hub.ids import new_id
from hub.runtime import Hub
from hub.schemas import Identity, utcnow
from identity import pending, store
from identity.models import CustomerRow, IdentityRow


def _new(session: Session, phone: str) -> CustomerRow:
    customer = store.new_customer(session, utcnow())
    store.claim(session, customer.id, [Identity(type="phone", value=phone)], "pos")
    return customer


def _count(hub: Hub, model: object) -> int:
    with hub.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]


def test_a_transaction_with_only_new_customers_writes_them_at_commit(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:
        customer = _new(session, "+8613900000001")
        assert pending.PENDING_KEY in session.info  # buffered, not written yet
    with quiet_hub.sessions() as session:
        row = session.scalars(select(IdentityRow).where(IdentityRow.value == "+8613900000001")).one()
        assert row.customer_id == customer.id
        assert session.get(CustomerRow, customer.id) is not None


def test_an_orm_read_of_either_table_writes_the_buffer_first(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:
        customer = _new(session, "+8613900000002")
        found = session.scalars(select(IdentityRow.customer_id).where(IdentityRow.value == "+8613900000002")).all()
        assert found == [customer.id]
        assert pending.PENDING_KEY not in session.info


def test_a_statement_the_orm_cannot_attribute_to_a_table_writes_the_buffer_first(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:
        _new(session, "+8613900000007")
        assert session.scalar(select(func.count()).select_from(IdentityRow)) == 1


def test_a_read_of_another_table_leaves_the_buffer_alone(quiet_hub: Hub) -> None:
    from hub.models import EventRow

    with quiet_hub.transaction() as session:
        _new(session, "+8613900000003")
        session.scalars(select(EventRow.id).limit(1)).all()
        assert pending.PENDING_KEY in session.info


def test_changing_a_buffered_customer_inserts_it_before_the_update(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:
        customer = _new(session, "+8613900000004")
        customer.last_source = "pos"
        session.flush()  # the UPDATE would match no row if the INSERT had not gone first
    with quiet_hub.sessions() as session:
        assert session.get(CustomerRow, customer.id).last_source == "pos"  # type: ignore[union-attr]


def test_a_claim_lost_to_another_worker_retries_and_writes_nothing(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:  # "another worker" holds the phone already
        other = store.new_customer(session, utcnow())
    with quiet_hub.transaction() as session:
        session.connection().execute(insert(IdentityRow.__table__), {
            "id": new_id(), "type": "phone", "value": "+8613900000005", "customer_id": other.id, "shared": False,
            "source": "pos", "first_seen": utcnow(), "last_seen": utcnow()})
    customers = _count(quiet_hub, CustomerRow)
    with pytest.raises(RetryableError), quiet_hub.transaction() as session:
        _new(session, "+8613900000005")
    assert _count(quiet_hub, CustomerRow) == customers  # the whole transaction rolled back
    assert _count(quiet_hub, IdentityRow) == 1


def test_claiming_one_identifier_twice_for_a_customer_is_a_bug_not_a_retry(quiet_hub: Hub) -> None:
    with quiet_hub.transaction() as session:
        customer = _new(session, "+8613900000006")
        with pytest.raises(AssertionError, match="claimed twice"):
            store.claim(session, customer.id, [Identity(type="phone", value="+8613900000006")], "pos")
