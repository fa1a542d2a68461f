"""Building the plugin manager: built-in packages by dotted name, then the `crmhub` entry points."""

from __future__ import annotations

import difflib
import importlib
import logging

import pluggy

from hub import hookspecs
from hub.errors import HubError

log = logging.getLogger(__name__)

hookimpl = pluggy.HookimplMarker("crmhub")

# name -> module. The names match the entry points in pyproject.toml, so a module
# registered here is skipped when the entry points load it again.
BUILTIN_PLUGINS: dict[str, str] = {
    "identity": "identity",
    "webhooks": "webhooks",
    "enrichment": "enrichment",
    "web": "connectors.web",
    "douyin": "connectors.douyin",
    "xiaohongshu": "connectors.xiaohongshu",
    "wecom": "connectors.wecom",
    "callcenter": "connectors.callcenter",
    "pos": "connectors.pos",
    "erp": "connectors.erp",
    "credit_registry": "connectors.credit_registry",
    "spreadsheet": "connectors.spreadsheet",
}


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("crmhub")
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(pm: pluggy.PluginManager, only: str | None = None, *, entry_points: bool = True) -> None:
    """Register the built-ins (those present) and installed entry points, filtered by `only`."""
    wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
    if wanted:
        _refuse_unknown(wanted)
    for name, dotted in BUILTIN_PLUGINS.items():
        if wanted is not None and name not in wanted:
            continue
        if pm.get_plugin(name) is not None:
            continue
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name and dotted.startswith(exc.name):  # the plugin itself is absent
                continue
            raise
        pm.register(module, name=name)
    if entry_points:
        if wanted is not None:
            for ep_name in _entry_point_names():
                if ep_name not in wanted and pm.get_plugin(ep_name) is None:
                    pm.set_blocked(ep_name)
        pm.load_setuptools_entrypoints("crmhub")
    pm.check_pending()


def _refuse_unknown(wanted: set[str]) -> None:
    """A misspelt CRMHUB_LOAD_PLUGINS name (`webhook`) used to load nothing, silently: no inbound URLs, no
    endpoints, and raw rows failing later with "unknown connector". One line at start instead."""
    known = sorted({*BUILTIN_PLUGINS, *_entry_point_names()})
    unknown = sorted(wanted - set(known))
    if unknown:
        hints = [f"{n!r}" + (f" (did you mean {near[0]!r}?)" if (near := difflib.get_close_matches(n, known, n=1))
                             else "") for n in unknown]
        raise HubError(f"CRMHUB_LOAD_PLUGINS names no installed plugin: {', '.join(hints)}; installed: "
                       f"{', '.join(known)}", code="unknown_plugin")


def _entry_point_names() -> list[str]:
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group="crmhub")]
