"""Sphinx extension: the widget JavaScript is loaded only on pages that show Jupyter widgets.

Jupyter Book 1.x adds every ``*.js`` file under ``_static`` to every page (``html_js_files``). The vendored widget
files (``_static/widgets/``, ``make widgets``) and the shim ``_static/widgets_offline.js`` must load only where
myst-nb puts them (``nb_ipywidgets_js`` in ``_config.yml``: pages whose notebook stored widget state) and in their
order (require.js, shim, html-manager); loaded everywhere, ``anywidget/index.js`` (an anonymous AMD module) makes
require.js throw and every page would download the 3.6 MB html-manager.
"""

from __future__ import annotations

from typing import Any

WIDGET_JS_PREFIXES = ("widgets/", "widgets_offline.js")


def _name(entry: Any) -> str:
    return str(entry[0] if isinstance(entry, (tuple, list)) else getattr(entry, "filename", entry))


def drop_widget_js(app: Any, config: Any) -> None:
    """Remove the widget files from the ``html_js_files`` that apply to every page."""
    files = list(getattr(config, "html_js_files", []) or [])
    config.html_js_files = [f for f in files if not _name(f).startswith(WIDGET_JS_PREFIXES)]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", drop_widget_js, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
