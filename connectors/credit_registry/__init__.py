"""`credit_registry`: company profiles by USCC from Tianyancha or Qichacha, normalised to contract §6.

`crmhub demo` points a source at a local stand-in for Tianyancha (`demo.py`): a real lookup is a paid call
to the internet, which the demo never makes.
"""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl
from hub.demo import DemoSource

from .connector import CreditRegistryConfig, CreditRegistryConnector
from .mapping import profile_event
from .providers import CompanyMismatch, CompanyNotFound, CreditRegistryError, RegistryAuthError

__all__ = [
    "CompanyMismatch",
    "CompanyNotFound",
    "CreditRegistryConfig",
    "CreditRegistryConnector",
    "CreditRegistryError",
    "RegistryAuthError",
    "demo_sources",
    "profile_event",
    "register_connectors",
]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(CreditRegistryConnector())


@hookimpl
def demo_sources() -> list[DemoSource]:
    from .demo import demo_sources as sources

    return sources()
