"""Pieces of Envoy configuration every section uses: the extensions' type URL prefix
and the shape of a Lua HTTP filter."""

from __future__ import annotations

# The "@type" of an extension's typed_config: this, then e.g. "filters.http.lua.v3.Lua".
EXTENSIONS = "type.googleapis.com/envoy.extensions."


def lua_http_filter(name: str, source: str) -> dict:
    """The HTTP filter ``name`` running the Lua program ``source``."""
    return {
        "name": name,
        "typed_config": {
            "@type": EXTENSIONS + "filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": source},
        },
    }
