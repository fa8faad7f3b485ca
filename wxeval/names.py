"""Names that become parts of file paths or object keys (models, variables, custom regions).

A model ``m`` writes ``OUTPUT/m.nc``, ``m.csv``, ``m.json`` and its statistics under
``STATISTICS/m/<variable>/…``. A name is therefore one plain path component: not empty, no
``/`` or ``\\``, not ``.`` or ``..``, not starting with ``.`` (hidden files, and wxeval's own
temporaries are ``.*.tmp``), no control characters, at most :data:`MAX_LENGTH` characters
(file systems allow 255 bytes per component, the suffixes and temporary prefixes need room).
"""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 120

#: Names of files wxeval itself writes into the output folder (``check.json``): a model of that
#: name would overwrite them or be overwritten.
RESERVED = frozenset({"check"})


def name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a path component, or ``None`` when it is fine."""
    if not isinstance(name, str):
        return f"must be text, got {type(name).__name__}"
    if not name.strip():
        return "must not be empty"
    if "/" in name or "\\" in name:
        return "must not contain a path separator ('/' or '\\')"
    if name in (".", ".."):
        return "must not be '.' or '..'"
    if name.startswith("."):
        return "must not start with '.'"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "must not contain control characters"
    if name != name.strip():
        return "must not start or end with white space"
    if len(name) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def check_name(name: object, what: str) -> str:
    """``name`` itself, or ``ValueError("<what> <name!r> …")`` when it cannot be a path part."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{what} {name!r} {problem} (it becomes part of file names)")
    return name  # type: ignore[return-value]
