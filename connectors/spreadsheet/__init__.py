"""`spreadsheet`: bulk import of legacy .xlsx/.csv customer exports (`crmhub import FILE`)."""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl

from .connector import SpreadsheetConfig, SpreadsheetConnector

__all__ = ["SpreadsheetConfig", "SpreadsheetConnector", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(SpreadsheetConnector())
