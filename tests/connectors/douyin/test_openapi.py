"""The client_token flow (authlib, Douyin's JSON dialect) and open_id → allied_id, against a local fake."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from connectors.douyin import DouyinAPIError, DouyinConnector, DouyinOpenAPI
from hub.connector import ParseContext
from hub.schemas import utcnow
from tests.connectors.acceptance import load_json
from tests.connectors.douyin.acceptance import CONFIG, FIXTURES, sign
from tests.connectors.douyin.fake_openapi import FakeDouyin, serve

OPEN_ID = "_000QadFMhmWSGhO8Ei3dBz4ZxAqtDAsFtYm"


@pytest.fixture
def fake() -> Iterator[FakeDouyin]:
    with serve(FakeDouyin(CONFIG["client_key"], CONFIG["client_secret"], allied_ids={OPEN_ID: "allied-7f3a"})) as f:
        yield f


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def test_client_token_is_fetched_with_douyins_json_body_and_cached(fake: FakeDouyin, http: httpx.Client) -> None:
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    token = api.client_token()
    assert token.startswith("clt.") and token == fake.tokens[-1]
    path, headers, body = fake.requests[0]
    assert path == "/oauth/client_token/" and headers["content-type"] == "application/json"
    assert body == {"client_key": CONFIG["client_key"], "client_secret": CONFIG["client_secret"],
                    "grant_type": "client_credential"}
    assert api.client_token() == token and len(fake.tokens) == 1  # cached while valid
    assert api.oauth.token["expires_at"] > 0


def test_an_expiring_token_is_fetched_again(fake: FakeDouyin, http: httpx.Client) -> None:
    fake.expires_in = 200  # inside the 5-minute leeway: treated as expired at once
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    first, second = api.client_token(), api.client_token()
    assert first != second and fake.tokens == [first, second]


def test_wrong_secret_is_error_10013(fake: FakeDouyin, http: httpx.Client) -> None:
    api = DouyinOpenAPI(http, CONFIG["client_key"], "wrong-secret", fake.base_url)
    with pytest.raises(DouyinAPIError) as err:
        api.client_token()
    assert err.value.details == {"error_code": "10013", "description": "client_key 或 client_secret 错误"}
    assert fake.tokens == []


def test_get_allied_id_sends_the_client_token_header(fake: FakeDouyin, http: httpx.Client) -> None:
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a"
    path, headers, body = fake.requests[-1]
    assert path == "/api/douyin/v1/auth/get_related_id/" and body == {"open_id": OPEN_ID}
    assert headers["access-token"] == fake.tokens[-1]
    with pytest.raises(DouyinAPIError) as err:
        api.get_allied_id("unknown-open-id")
    assert err.value.details["err_no"] == 2100005


def test_a_token_douyin_no_longer_accepts_is_fetched_again_once(fake: FakeDouyin, http: httpx.Client) -> None:
    """Another worker's fetches end this process's cached token early: it is replaced, not kept for 2 hours."""
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    other = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a"
    other.client_token()
    other.drop_token()
    other.client_token()  # two newer tokens: the first is dead (28001003)
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a"
    assert len(fake.tokens) == 4


def test_a_token_superseded_elsewhere_works_until_its_grace_ends(fake: FakeDouyin, http: httpx.Client) -> None:
    """One newer fetch leaves the previous token 5 minutes (platforms.md §1.6); after that it is fetched again."""
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    other = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    first = api.client_token()
    other.client_token()
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a" and fake.requests[-1][1]["access-token"] == first
    fake.expires[first] = 0  # the grace is over
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a" and len(fake.tokens) == 3


def test_the_fake_refuses_what_douyin_refuses(fake: FakeDouyin, http: httpx.Client) -> None:
    """A superseded token dies after the grace period, and get_related_id wants a JSON body: a lenient fake
    would let a client that ignores either pass here and fail against Douyin."""
    fake.grace_s = 0
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    first = api.client_token()
    DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url).client_token()
    url = fake.base_url + "/api/douyin/v1/auth/get_related_id/"
    assert http.post(url, json={"open_id": OPEN_ID}, headers={"access-token": first}).json()["err_no"] == 28001008
    form = http.post(url, data={"open_id": OPEN_ID}, headers={"access-token": fake.tokens[-1]})
    assert form.json()["err_no"] == 2100005


def test_a_rejected_token_is_dropped_only_if_still_cached(fake: FakeDouyin, http: httpx.Client) -> None:
    """helper-32: a thread whose token was rejected dropped whichever token was cached, maybe one another thread
    had just fetched, ending it early for everyone."""
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    old = api.client_token()
    api.drop_token()
    fresh = api.client_token()  # another thread's fetch
    api.drop_token(old)  # the first thread's rejection arrives late
    assert api.client_token() == fresh and fake.tokens == [old, fresh]


def test_an_expired_token_is_fetched_again(fake: FakeDouyin, http: httpx.Client) -> None:
    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    api.client_token()
    fake.expires[fake.tokens[-1]] = 0  # the server's clock says it expired, whatever ours says
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a" and len(fake.tokens) == 2


@pytest.mark.parametrize("err_no", [28001005, 28003018])
def test_retry_later_answers_are_retryable(fake: FakeDouyin, http: httpx.Client, err_no: int) -> None:
    from hub.errors import RetryableError

    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], fake.base_url)
    fake.api_errors.append(err_no)
    with pytest.raises(RetryableError):
        api.get_allied_id(OPEN_ID)
    assert api.get_allied_id(OPEN_ID) == "allied-7f3a" and len(fake.tokens) == 1


def test_unreachable_api_is_retryable(http: httpx.Client) -> None:
    from hub.errors import RetryableError

    api = DouyinOpenAPI(http, CONFIG["client_key"], CONFIG["client_secret"], "http://127.0.0.1:9")
    with pytest.raises(RetryableError):
        api.client_token()


class _State:
    def get(self, key: str) -> None:
        return None

    def set(self, key: str, value: object) -> None:
        pass


def test_parse_adds_allied_id_when_enabled(fake: FakeDouyin, http: httpx.Client) -> None:
    connector = DouyinConnector()
    config = connector.validate_config({**CONFIG, "api_base_url": fake.base_url, "resolve_allied_id": True})
    body = (FIXTURES / "im_receive_msg.json").read_bytes()
    ctx = ParseContext(uuid.uuid4(), "dy", utcnow(), _State(), http=http)
    [draft] = connector.parse(sign(body, CONFIG), config, ctx)
    assert draft.properties["allied_id"] == "allied-7f3a"
    assert load_json(FIXTURES / "im_receive_msg.json")["from_user_id"] == OPEN_ID
