"""The demo story of Connectors I: every demo request of douyin, xiaohongshu and wecom is accepted over HTTP."""

from __future__ import annotations

from contextlib import ExitStack

from sqlalchemy import select

from connectors.douyin.demo import demo_sources as douyin_demo
from connectors.wecom.demo import demo_sources as wecom_demo
from connectors.xiaohongshu.demo import demo_sources as xhs_demo
from hub.models import EventRow, QuarantineRow
from hub.runtime import Hub
from tests.helpers import add_source, client_for, wait_processed


def test_demo_requests_are_accepted_and_tell_one_story(any_hub: Hub) -> None:
    hub = any_hub
    client = client_for(hub)
    planned = []
    with ExitStack() as stand_ins:  # WeCom's server API, as `crmhub demo` runs it
        for demo in [*douyin_demo(), *xhs_demo(), *wecom_demo()]:
            config = {**demo.config, **(stand_ins.enter_context(demo.stand_in()) if demo.stand_in else {})}
            source_id = add_source(client, demo.connector, demo.name, config)
            planned += [(req.order, source_id, req) for req in demo.requests()]
        orders = sorted(order for order, _, _ in planned)
        assert orders[0] >= 1 and orders[-1] < 40
        for _, source_id, req in sorted(planned, key=lambda p: p[0]):
            resp = client.request(req.method, f"/hooks/{source_id}", content=req.body, headers=req.headers,
                                  params=req.query)
            assert resp.status_code == 200, (req.order, resp.text)
        wait_processed(hub)
    with hub.sessions() as s:
        events = s.scalars(select(EventRow).order_by(EventRow.occurred_at)).all()
        assert s.scalars(select(QuarantineRow)).first() is None
    types = [(e.source, e.type) for e in events]
    xhs = next(e for e in events if e.source == "xiaohongshu")
    assert xhs.data["occurred_at"] == "2026-03-03T02:05:12+00:00"  # 10:05:12 Asia/Shanghai
    assert types.count(("douyin", "message.received")) == 1 and ("douyin", "conversation.opened") in types
    assert types.count(("xiaohongshu", "lead.submitted")) == 2 and ("wecom", "contact.added") in types
    phone_events = [e for e in events if {"type": "phone", "value": "+8613800138000"} in e.data["identities"]]
    # the phone his WeCom adviser noted on his contact (externalcontact/get) joins WeCom to the rest
    assert {e.source for e in phone_events} == {"douyin", "xiaohongshu", "wecom"}
    # identity/ resolves 张伟's Douyin open_id and phone into one customer across the three platforms
    assert len({e.customer_id for e in phone_events}) == 1 and phone_events[0].customer_id is not None
    douyin_customer = {e.customer_id for e in events if e.source == "douyin"}
    assert douyin_customer == {phone_events[0].customer_id}
