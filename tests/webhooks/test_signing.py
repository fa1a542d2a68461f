"""The standardwebhooks wrapper: malformed input is a SigningError (401), never ValueError/binascii.Error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st
from standardwebhooks import Webhook

from webhooks.sender import signed_headers
from webhooks.signing import SigningError, generate_secret, sign, verify


def test_signature_round_trips_with_the_reference_library() -> None:
    secret = generate_secret()
    headers = signed_headers([secret], "msg_1", '{"a":1}')
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    assert verify(secret, b'{"a":1}', headers) == {"a": 1}


def test_non_utc_timestamp_is_converted_before_signing() -> None:
    secret = generate_secret()
    local = datetime.now(timezone(timedelta(hours=8)))
    assert sign([secret], "m", local, "x") == sign([secret], "m", local.astimezone(UTC), "x")


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_%%%", "whsec_abc", "nope", "whsec_====="])
def test_malformed_secret_is_a_signing_error(secret: str) -> None:
    with pytest.raises(SigningError):
        sign([secret], "m", datetime.now(UTC), "x")


@settings(max_examples=200, deadline=None)
@given(sig=st.text(max_size=80), ts=st.text(max_size=20), msg_id=st.text(min_size=0, max_size=20))
def test_any_malformed_header_is_a_signing_error(sig: str, ts: str, msg_id: str) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with pytest.raises(SigningError):
        verify(secret, b"{}", {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig})


@pytest.mark.parametrize("sig", ["v1", "v1,!!!", "v1,a,b", "v1,YWJj=x", " "])
def test_library_leaks_are_wrapped(sig: str) -> None:
    now = str(int(datetime.now(UTC).timestamp()))
    with pytest.raises(SigningError):
        verify(generate_secret(), b"{}", {"webhook-id": "m", "webhook-timestamp": now, "webhook-signature": sig})
