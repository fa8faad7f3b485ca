"""Secrets (values under secret-looking keys of storage options) to redact from findings."""

from __future__ import annotations

from typing import Any

from wxeval.config import Config
from wxeval.loaders import _is_secret


def _secret_values(config: Config) -> list[str]:
    out: list[str] = []

    def walk(obj: Any, secret: bool = False) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, secret or _is_secret(str(k)))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, secret)
        elif secret and isinstance(obj, str) and len(obj) >= 4 and obj not in ("anon",):
            out.append(obj)

    data = config.model_dump(mode="json")
    for store in _store_dicts(data):
        walk(store.get("storage_options") or {})
    walk(data.get("output", {}).get("storage_options") or {})
    return sorted(set(out), key=len, reverse=True)


def _store_dicts(data: dict) -> list[dict]:
    stores = [data.get(k) for k in ("truth", "climatology", "land_sea_mask")]
    for m in (data.get("models") or {}).values():
        stores += [m, m.get("truth"), m.get("climatology")]
    return [s for s in stores if isinstance(s, dict)]
