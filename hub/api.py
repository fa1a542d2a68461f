"""Shared API plumbing (auth, errors, the hub dependency) and the kernel's own routes."""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hub.connector import dump_config, keep_masked_secrets, public_config, refuse_masked_secrets
from hub.errors import Conflict, HubError, InvalidRequest, NotFound, SecretUnreadable, Unauthorized, validation_message
from hub.models import SourceRow
from hub.outage_log import OutageLog, reason
from hub.runtime import Hub
from hub.schemas import ConnectorInfo, Source, SourceCreate, SourceUpdate

log = logging.getLogger(__name__)


# A database outage fails every API request: logged once per outage (when it starts, ends, and once a minute
# meanwhile), not with two tracebacks per request (the handler's and the ASGI server's).
DATABASE_OUTAGE = OutageLog(log, "reaching the database from the API")
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def get_hub_dep(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


# SQLite's words for a schema the code does not match (PostgreSQL raises ProgrammingError for these).
_SCHEMA_MISMATCH = ("no such table", "no such column", "has no column named")


def _schema_mismatch(exc: Exception) -> bool:
    return any(words in str(getattr(exc, "orig", exc)) for words in _SCHEMA_MISMATCH)


def _database_answered(*_: Any) -> None:
    """Any statement that ran ends the outage: a route that never reaches the database proves nothing."""
    DATABASE_OUTAGE.succeeded()


HubDep = Annotated[Hub, Depends(get_hub_dep)]


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require_admin(request: Request) -> None:
    """Bearer auth for /v1/*: constant-time compare with the admin token."""
    expected = request.app.state.admin_token
    given = bearer_token(request)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong admin token (Authorization: Bearer <CRMHUB_ADMIN_TOKEN>)")


AdminDep = Depends(require_admin)


def admin_refusal(request: Request) -> JSONResponse | None:
    """The 401 `require_admin` answers with, or None when the token is right."""
    try:
        require_admin(request)
    except Unauthorized as refused:
        return JSONResponse(refused.to_body(), status_code=refused.status_code, headers={"www-authenticate": "Bearer"})
    return None


def is_admin_path(path: str) -> bool:
    """Under `/v1`, where contract §3 answers a missing or wrong token with 401 whatever the path or method.

    Without a token, an unknown path or method there was a 404 or 405: it told a stranger which routes exist.
    """
    return path == "/v1" or path.startswith("/v1/")


def _validation_detail(err: Any) -> dict[str, str]:
    if err.get("type") == "json_invalid":  # FastAPI names the position (`body.0`): say what is wrong instead
        return {"field": "body", "message": f"body is not valid JSON: {(err.get('ctx') or {}).get('error', '')}"}
    return {"field": _field_name(err["loc"]), "message": validation_message(err)}


def _field_name(loc: tuple[Any, ...]) -> str:
    """The field as a client names it: `limit`, as the hub's own checks name `cursor` or `types`, not FastAPI's
    `query.limit`. A problem with the body as a whole (a JSON array where an object belongs) has no field of its
    own: it is the body's, named as a body that is not JSON is, not ""."""
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts[1:] if parts[:1] == ["query"] else parts) or "body"


def _not_read_as_json(request: Request, errors: list[Any]) -> JSONResponse | None:
    """415 for a body FastAPI left unread because its Content-Type is not JSON (`curl -d` sends a form type).

    Validated as raw bytes, it failed as "not a valid dictionary", which sent the sender looking for a fault in
    JSON that was fine; the header is what to change.
    """
    if not any(tuple(e["loc"]) == ("body",) and isinstance(e.get("input"), bytes | bytearray) for e in errors):
        return None
    sent = request.headers.get("content-type")
    problem = f"Content-Type {sent!r} is not JSON" if sent else "no Content-Type header"
    body = {"error": {"code": "unsupported_media_type", "message": f"the body must be JSON: {problem}",
                      "details": [{"field": "content-type", "message": "send Content-Type: application/json"}]}}
    return JSONResponse(body, status_code=415)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path, for a 405's `Allow` (RFC 9110 §15.5.6).

    Starlette answers with the methods of the first route whose path matched: `PUT /v1/sources` said `Allow: POST`
    though `GET` is served there too, by another route.
    """
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # HubApp answers HEAD wherever GET is served
    return sorted(methods)


def _leaf_routes(routes: list[Any]) -> Iterator[Any]:
    """The routes that take requests, through included routers (FastAPI keeps each as one entry; the hub includes
    them without a prefix, so their own paths are the ones requested)."""
    for route in routes:
        if getattr(route, "methods", None):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _leaf_routes(included.routes)


def install_error_handlers(app: Any) -> None:
    async def hub_error(_: Request, exc: HubError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        unread = _not_read_as_json(request, list(errors))
        if unread is not None:
            return unread
        unknown = [e for e in errors if e.get("type") == "uuid_parsing" and tuple(e["loc"][:1]) == ("path",)]
        if unknown and len(unknown) == len(errors):  # `/v1/endpoints/abc` names no endpoint: 404, as for any id
            name = str(unknown[0]["loc"][-1]).removesuffix("_id")
            return JSONResponse(NotFound(f"no {name} {unknown[0].get('input')!r}", code=f"{name}_not_found").to_body(),
                                status_code=404)
        details = [_validation_detail(err) for err in errors]
        names = ", ".join(d["field"] for d in details)
        body = {"error": {"code": "validation_error", "message": f"invalid request: {names}", "details": details}}
        return JSONResponse(body, status_code=422)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if is_admin_path(request.url.path):  # no route matched, so no route's AdminDep ran: check the token here
            refusal = admin_refusal(request)
            if refusal is not None:
                return refusal
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        allowed = allowed_methods(request) if exc.status_code == 405 else None
        if allowed:
            others = {k: v for k, v in (headers or {}).items() if k.lower() != "allow"}
            headers = {**others, "allow": ", ".join(allowed)}
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail), "details": None}},
            status_code=exc.status_code,
            headers=headers,
        )

    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        """A bug still answers in the contract's error shape (§3), not Starlette's plain-text page; the
        traceback goes to the log, never to the client."""
        log.error("unhandled error", exc_info=exc)
        body = {"error": {"code": "internal_error", "details": None,
                          "message": f"internal error ({type(exc).__name__}); the hub's log has the details"}}
        return JSONResponse(body, status_code=500)

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """Unreachable, restarting or out of connections: a 503 the caller retries, naming the database (the log
        has the driver's message, which names the server). SQLite reports a schema that does not match the code
        (a migration not applied) as an OperationalError too: that is a fault to fix, not an outage to wait out."""
        if _schema_mismatch(exc):
            return await unexpected_error(request, exc)
        DATABASE_OUTAGE.failed(exc)
        cause = reason(exc).partition(":")[0]
        body = {"error": {"code": "database_unavailable", "details": None,
                          "message": f"the database is unavailable ({cause}); retry later"}}
        return JSONResponse(body, status_code=503, headers={"retry-after": "5"})

    app.add_exception_handler(HubError, hub_error)
    engine = app.state.hub.engine
    if not event.contains(engine, "after_cursor_execute", _database_answered):
        event.listen(engine, "after_cursor_execute", _database_answered)
    for down in DATABASE_DOWN:
        app.add_exception_handler(down, database_unavailable)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


# ---------------------------------------------------------------- kernel routes

router = APIRouter()
admin = APIRouter(prefix="/v1", dependencies=[AdminDep])


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(hub: HubDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with hub.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    if hub.settings.broker_url:
        try:
            import redis

            redis.Redis.from_url(hub.settings.broker_url, socket_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {exc.__class__.__name__}"
    else:
        checks["broker"] = "in-process"
    ready = all(v in ("ok", "in-process") for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@admin.get("/connectors")
def list_connectors(hub: HubDep) -> dict[str, list[ConnectorInfo]]:
    return {
        "items": [ConnectorInfo(name=c.name, title=c.title, config_schema=c.config_schema()) for c in hub.connectors]
    }


def source_view(hub: Hub, row: SourceRow) -> Source:
    connector = hub.connectors.get(row.connector) if row.connector in hub.connectors else None
    config = public_config(connector, row.config_public) if connector else {}
    return Source(
        id=row.id,
        connector=row.connector,
        name=row.name,
        enabled=row.enabled,
        webhook_url=f"{hub.settings.public_base()}/hooks/{row.id}",
        created_at=row.created_at,
        config=config,
    )


def create_source(hub: Hub, body: SourceCreate) -> Source:
    connector = hub.connectors.get(body.connector)
    refuse_masked_secrets(connector, body.config)
    model = connector.validate_config(body.config)
    config = dump_config(model)
    with hub.transaction() as session:
        _require_free_name(session, body.name)
        row = SourceRow(
            connector=connector.name,
            name=body.name,
            enabled=True,
            config_sealed=hub.box.seal(config),
            config_public=_public_part(connector, config),
        )
        session.add(row)
        _flush_naming(session, body.name)
        return source_view(hub, row)


def _require_free_name(session: Session, name: str) -> None:
    """Source names are unique (the import command and the CLI find sources by name)."""
    if session.scalars(select(SourceRow.id).where(SourceRow.name == name)).first():
        raise _name_taken(name)


def _flush_naming(session: Session, name: str) -> None:
    """Flush a new or renamed source. Two requests for one free name both pass the check above; on PostgreSQL the
    second then fails the unique index here, and says so like the check would, instead of a 500."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise _name_taken(name) from exc


def _name_taken(name: str) -> Conflict:
    """409: the request is valid, it collides with a source that exists (contract §3: a fitting 4xx)."""
    return Conflict(f"a source named {name!r} exists", code="duplicate_name",
                    details=[{"field": "name", "message": "already used"}])


def _public_part(connector: Any, config: dict[str, Any]) -> dict[str, Any]:
    secret = connector.secret_fields()
    return {k: (bool(v) if k in secret else v) for k, v in config.items()}


@admin.post("/sources", status_code=201)
def post_source(body: SourceCreate, hub: HubDep) -> Source:
    return create_source(hub, body)


@admin.get("/sources")
def list_sources(hub: HubDep) -> dict[str, list[Source]]:
    with hub.sessions() as session:
        rows = session.scalars(select(SourceRow).order_by(SourceRow.created_at)).all()
        return {"items": [source_view(hub, r) for r in rows]}


def _get_source(session: Any, source_id: uuid.UUID) -> SourceRow:
    row = session.get(SourceRow, source_id)
    if row is None:
        raise NotFound(f"no source {source_id}", code="source_not_found")
    return row  # type: ignore[no-any-return]


@admin.get("/sources/{source_id}")
def get_source(source_id: uuid.UUID, hub: HubDep) -> Source:
    with hub.sessions() as session:
        return source_view(hub, _get_source(session, source_id))


def update_source(hub: Hub, source_id: uuid.UUID, body: SourceUpdate) -> Source:
    with hub.transaction() as session:
        row = _get_source(session, source_id)
        if body.connector is not None and body.connector != row.connector:
            raise InvalidRequest(f"a source's connector cannot change ({row.connector!r}); create a new source",
                                 details=[{"field": "connector", "message": "read-only"}])
        if body.enabled is not None:
            row.enabled = body.enabled
        if body.name is not None and body.name != row.name:
            _require_free_name(session, body.name)
            row.name = body.name
        if body.config is not None:
            connector = hub.connectors.get(row.connector)
            config = dump_config(connector.validate_config(_merged_config(hub, connector, row, body)))
            row.config_sealed = hub.box.seal(config)
            row.config_public = _public_part(connector, config)
        _flush_naming(session, row.name)
        view = source_view(hub, row)
    hub.forget_source(source_id)
    return view


def _merged_config(hub: Hub, connector: Any, row: SourceRow, body: SourceUpdate) -> dict[str, Any]:
    """The stored config with `body.config` over it; with `replace_config`, `body.config` alone.

    A key a later version removed is dropped; a key in the request must be known. Replacing reads nothing
    stored, which is how a source sealed with a lost CRMHUB_SECRET_KEY gets new secrets without being deleted
    and re-added (that would change its webhook URL on every platform).
    """
    change = body.config or {}
    if body.replace_config:
        refuse_masked_secrets(connector, change)  # the mask would stand for the secret being replaced
        return dict(change)
    try:
        stored = {k: v for k, v in hub.box.open(row.config_sealed).items() if k in connector.config_keys()}
    except SecretUnreadable as exc:
        raise SecretUnreadable(f"{exc.message}. If that key is lost, send the source's whole config with "
                               "replace_config: true (CLI: --replace-config) to replace it") from exc
    kept = keep_masked_secrets(connector, change)
    _refuse_secrets_to_a_new_destination(connector, stored, change, kept)
    return {**stored, **kept}


def _refuse_secrets_to_a_new_destination(connector: Any, stored: dict[str, Any], change: dict[str, Any],
                                         kept: dict[str, Any]) -> None:
    moved = sorted(k for k in connector.destination_fields() if k in change and change[k] != stored.get(k))
    carried = sorted(k for k in connector.secret_fields() if stored.get(k) and k not in kept)
    if moved and carried:
        raise InvalidRequest(
            f"changing {', '.join(moved)} sends this source's secrets there: send {', '.join(carried)} again",
            code="secrets_required",
            details=[{"field": k, "message": f"required with a new {' / '.join(moved)}; the stored value is not "
                      "sent to a new destination"} for k in carried])


@admin.patch("/sources/{source_id}")
def patch_source(source_id: uuid.UUID, body: SourceUpdate, hub: HubDep) -> Source:
    return update_source(hub, source_id, body)


@admin.delete("/sources/{source_id}", status_code=204)
def delete_source(source_id: uuid.UUID, hub: HubDep) -> Response:
    with hub.transaction() as session:
        session.delete(_get_source(session, source_id))
    hub.forget_source(source_id)
    return Response(status_code=204)
