"""What every `crmhub` command prints: `--json` gives the API's JSON, otherwise a line for people."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from hub.errors import validation_message

__all__ = ["TIME_FORMATS", "TimeOption", "cut", "echo_json", "echo_result", "json_option"]


def echo_json(data: Any) -> None:
    """What `--json` prints: the API's JSON, indented, non-ASCII kept readable."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def echo_result(as_json: bool, data: Any, text: str) -> None:
    """`--json` prints the API's answer; otherwise a line for people."""
    if as_json:
        echo_json(data)
    else:
        click.echo(text)


# Text from outside (a platform's or a receiver's error, a quarantined header, a file name) is untrusted: an ESC in
# it would drive the operator's terminal (colours, the window title, cursor moves; rich keeps ESC). C0 and C1
# controls are shown as U+FFFD instead.
_TERMINAL_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_TERMINAL_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str, *, lines: bool = False) -> str:
    """`text` with no control character left to act on a terminal; newlines and tabs too unless `lines`."""
    return (_TERMINAL_CONTROLS_BUT_LINES if lines else _TERMINAL_CONTROLS).sub("\ufffd", text)


def table_time(value: str | None, missing: str = "-") -> str:
    """An API time (RFC 3339) for a table: to the second, its zone kept (`Z` for UTC). The first 19 characters
    dropped the offset, and an operator in China read UTC as local time."""
    if not value:
        return missing
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    offset = moment.utcoffset()
    zone = "" if offset is None else "Z" if not offset else moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters for a table or a line, ending in `…` when cut (`--json` has it whole)."""
    return text if len(text) <= width else text[:width - 1] + "…"


json_option = click.option("--json", "as_json", is_flag=True, help="Print the JSON the API returns.")

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]


class TimeOption(click.DateTime):
    """A `--since`: a date or a time, with or without an offset (none means UTC), that exists in UTC."""

    def __init__(self) -> None:
        super().__init__(TIME_FORMATS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from hub.schemas import in_utc_range

        when = super().convert(value, param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            return in_utc_range(when)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


M = TypeVar("M", bound=BaseModel)


def request_body(model: type[M], **values: Any) -> M:
    """The API's request model; what it rejects is a usage error (exit 2), as a 422 on a body would be."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {validation_message(e)}"
                             for e in exc.errors())
        raise click.UsageError(problems) from exc
