"""Building the plugin manager: built-in packages by dotted name, then the `crmhub` entry points."""

from __future__ import annotations

import importlib
import logging

import pluggy

from hub import hookspecs

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


def _entry_point_names() -> list[str]:
    from importlib.metadata import entry_points

    return [ep.name for ep in entry_points(group="crmhub")]
