"""Credentials kept out of logs, messages, results and reports: the one redaction rule.

A key is secret when its name contains one of :data:`SECRET_WORDS` (case-insensitive), at any
depth of a mapping (``storage_options: {client_kwargs: {token: ...}}`` included). Two uses:

- :func:`redact` copies a mapping (storage options, a whole config) with every value under a
  secret key replaced by :data:`REDACTED`, for what is written (result attributes, manifests,
  the scorecard's configuration panel).
- :func:`scrub` removes from a text every credential *value* found under a secret key of a
  mapping, for messages (an error naming a path or URL that holds the token).

Every caller (``loaders``, ``api``, ``check``, the scorecard) goes through these functions; do
not test key names elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Words that make an option key secret (``token``, ``client_secret``, ``api_key``, ...).
SECRET_WORDS: tuple[str, ...] = ("token", "secret", "key", "password", "credential", "auth")

#: What a redacted value or credential is replaced with.
REDACTED = "<redacted>"

#: Values never treated as credentials even under a secret key (gcsfs' ``token: anon``), and the
#: shortest value scrubbed from text (shorter ones would blank unrelated words).
_NOT_SECRET = frozenset({"anon"})
_MIN_SCRUB_LENGTH = 4


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a credential (contains one of :data:`SECRET_WORDS`)."""
    k = str(key).lower()
    return any(w in k for w in SECRET_WORDS)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (nested mappings and lists) with every value under a secret key
    replaced by :data:`REDACTED`; anything else is returned unchanged."""
    if isinstance(obj, Mapping):
        return {k: (REDACTED if is_secret_key(k) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj


def secret_values(obj: Any) -> list[str]:
    """The credential strings held under secret keys anywhere in ``obj``, longest first (so a
    secret containing another is replaced whole); ``anon`` and values shorter than 4 characters
    are left out."""

    def walk(o: Any, secret: bool) -> Iterator[str]:
        if isinstance(o, Mapping):
            for k, v in o.items():
                yield from walk(v, secret or is_secret_key(k))
        elif isinstance(o, list | tuple):
            for v in o:
                yield from walk(v, secret)
        elif secret and isinstance(o, str) and len(o) >= _MIN_SCRUB_LENGTH and o not in _NOT_SECRET:
            yield o

    return sorted(set(walk(obj, False)), key=len, reverse=True)


def scrub(text: str, source: Any) -> str:
    """``text`` with every credential value of ``source`` (a mapping such as storage options or
    a config dump, see :func:`secret_values`) replaced by :data:`REDACTED`."""
    for s in secret_values(source):
        text = text.replace(s, REDACTED)
    return text


def redacted_config(cfg: Any) -> dict:
    """A pydantic config as JSON-ready data with every credential redacted (:func:`redact`)."""
    return redact(cfg.model_dump(mode="json"))
