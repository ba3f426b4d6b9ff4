"""Singular JSONPaths (one value per document): pagination links, cursors and totals, job status and URLs.

Compiled once per path string (RFC 9535, ``jsonpath-rfc9535``), imported only when used.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from airflow_campaign_provider.exceptions import MappingConfigError


def singular_path(path: Any, key: str) -> Any:
    """The compiled query of a JSONPath that selects one value; a clear error names ``key`` otherwise."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise MappingConfigError(key, f"expected a JSONPath starting with '$' (such as '$.meta.next'), got {path!r}")
    query, problem = _compile(path)
    if problem:
        raise MappingConfigError(key, problem)
    return query


@lru_cache(maxsize=256)
def _compile(path: str) -> tuple[Any, str | None]:
    import jsonpath_rfc9535

    try:
        query = jsonpath_rfc9535.compile(path)
    except jsonpath_rfc9535.JSONPathError as err:
        return None, f"invalid JSONPath {path!r}: {err}"
    if not query.singular_query():
        return None, f"{path!r} must select one value (no wildcards or filters)"
    return query, None


def read_path(path: str, document: Any) -> Any:
    """The value at a singular JSONPath (checked at parse time), None when absent."""
    node = singular_path(path, "path").find_one(document)
    return None if node is None else node.value
