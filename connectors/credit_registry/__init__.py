"""`credit_registry`: company profiles by USCC from Tianyancha or Qichacha, normalised to contract §6.

No `demo_sources`: a lookup is a paid call to the internet, which `crmhub demo` never makes.
"""

from __future__ import annotations

from collections.abc import Callable

from hub import Connector, hookimpl

from .connector import CreditRegistryConfig, CreditRegistryConnector
from .mapping import profile_event
from .providers import CompanyNotFound, CreditRegistryError, RegistryAuthError

__all__ = [
    "CompanyNotFound",
    "CreditRegistryConfig",
    "CreditRegistryConnector",
    "CreditRegistryError",
    "RegistryAuthError",
    "profile_event",
    "register_connectors",
]


@hookimpl
def register_connectors(register: Callable[[Connector], None]) -> None:
    register(CreditRegistryConnector())
