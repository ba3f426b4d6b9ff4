"""JSONPath for the outbound mapping: compiled once, walked step by step, loud about absent members. Pure.

Paths are RFC 9535 JSONPath, parsed by the ``jsonpath-rfc9535`` library. Names,
indexes and wildcards are walked here with plain lookups (evaluating a library query
per record is about 30 times slower); filters, slices, unions and ``..`` are resolved
by the library, one segment at a time.

Walking step by step is what tells a typo from an empty result: a name that no
object at that step has is an absent member (an error for a records path), while an
empty array or a filter that matches nothing is simply no records.

A column path is relative to its record, and may start with a context prefix
(the syntax of JSONata, whose ``$`` is also the current record):

* ``$$`` is the document root: ``$$.match.kickoff``;
* ``%`` is the enclosing record of a nested records path, ``%.%`` the one above it:
  with records ``$.teams[*].players[*]``, ``%.name`` is the team's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Any, Literal

from airflow_campaign_provider.column_types import MISSING
from airflow_campaign_provider.exceptions import MappingConfigError, ResponseMappingError
from airflow_campaign_provider.suggestions import did_you_mean

Context = Literal["record", "root", "parent"]
_PARENTS = re.compile(r"%(?:\.%)*")


@dataclass(frozen=True)
class Step:
    """One segment of a path: a name, an index or a wildcard walked here, or a library segment."""

    kind: Literal["name", "index", "wildcard", "segment"]
    key: str | int | None = None
    segment: Any = None
    descendant: bool = False

    @property
    def singular(self) -> bool:
        return self.kind in ("name", "index")

    def __str__(self) -> str:
        if self.kind == "name":
            key = str(self.key)
            return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"
        if self.kind == "index":
            return f"[{self.key}]"
        return "[*]" if self.kind == "wildcard" else str(self.segment)


@dataclass(frozen=True)
class CompiledPath:
    """A path compiled once. ``keys`` is set when every step is a name or an index (a singular path).

    :ivar context: where the path starts: the record, the document root (``$$``) or an
        enclosing record (``%``, ``levels`` records up).
    """

    source: str
    steps: tuple[Step, ...]
    keys: tuple[str | int, ...] | None
    context: Context = "record"
    levels: int = 0
    prefix: tuple[str | int, ...] = ()
    """The keys before the first step that can match several values."""

    @property
    def record_levels(self) -> int:
        """How many enclosing records a records path gives each record (``%`` may reach that far)."""
        multi = sum(not step.singular for step in self.steps)
        return max(0, multi - 1) if self.steps and not self.steps[-1].singular else multi

    def get_all(self, nodes: list[Any]) -> list[Any]:
        """:meth:`get` for many nodes; a singular path walks all of them one key at a time, at C speed."""
        if self.keys is None:
            return [self.get(node) for node in nodes]
        for key in self.keys:
            if type(key) is str and set(map(type, nodes)) == {dict}:
                nodes = list(map(dict.get, nodes, repeat(key), repeat(MISSING)))
            elif type(key) is int:
                nodes = [
                    node[key] if type(node) is list and -len(node) <= key < len(node) else MISSING for node in nodes
                ]
            else:
                nodes = [node.get(key, MISSING) if type(node) is dict else MISSING for node in nodes]
        return nodes

    def get(self, node: Any) -> Any:
        """The value at this path, ``MISSING`` when absent.

        A non-singular path gives the list of its matches, or ``MISSING`` when its
        leading names and indexes are absent (``tags`` for ``$.tags[*]``).
        """
        if self.keys is not None:
            return walk(node, self.keys)
        if walk(node, self.prefix) is MISSING:
            return MISSING
        return [value for value, _ in _resolve(self, [(node, ())], strict=False, track=False)]


def walk(node: Any, keys: Sequence[str | int]) -> Any:
    """Follow a singular path's keys from ``node``; ``MISSING`` when a step is absent."""
    for key in keys:
        # A name selects in an object only, an index in an array only (never in a string).
        if type(node) is not (list if type(key) is int else dict):
            return MISSING
        try:
            node = node[key]  # type: ignore[index]
        except (KeyError, IndexError):
            return MISSING
    return node


def compile_path(path: str, where: str, *, columns: bool = False) -> CompiledPath:
    """Compile a records path, or with ``columns`` a column path (relative, ``$$`` or ``%``).

    A path starting with ``$`` is JSONPath; otherwise a dotted key path (``price.amount``).
    :raises MappingConfigError: a syntax error, naming ``where``.
    """
    context: Context = "record"
    levels = 0
    rest = path
    if columns and path.startswith("$$"):
        context, rest = "root", "$" + path[2:]
    elif columns and path.startswith("%"):
        parents = _PARENTS.match(path)
        assert parents is not None
        context, levels, rest = "parent", parents.group().count("%"), "$" + path[parents.end() :]
    elif not path.startswith("$"):
        rest = "$" + "".join(f"[{json.dumps(part, ensure_ascii=False)}]" for part in path.split("."))
    steps = _parse(rest, path, where)
    singular = [step.singular for step in steps]
    prefix = tuple(step.key for step in steps[: singular.index(False) if False in singular else len(steps)])
    keys = prefix if all(singular) else None
    return CompiledPath(path, steps, keys, context, levels, prefix)  # type: ignore[arg-type]


def _parse(query_text: str, path: str, where: str) -> tuple[Step, ...]:
    import jsonpath_rfc9535
    from jsonpath_rfc9535.segments import JSONPathChildSegment, JSONPathRecursiveDescentSegment
    from jsonpath_rfc9535.selectors import IndexSelector, NameSelector, WildcardSelector

    try:
        query = jsonpath_rfc9535.compile(query_text)
    except jsonpath_rfc9535.JSONPathError as err:
        raise MappingConfigError(where, f"invalid JSONPath {path!r}: {err}") from None
    steps: list[Step] = []
    for segment in query.segments:
        selectors = segment.selectors
        if isinstance(segment, JSONPathChildSegment) and len(selectors) == 1:
            selector = selectors[0]
            if isinstance(selector, NameSelector):
                steps.append(Step("name", selector.name))
                continue
            if isinstance(selector, IndexSelector):
                steps.append(Step("index", selector.index))
                continue
            if isinstance(selector, WildcardSelector):
                steps.append(Step("wildcard"))
                continue
        steps.append(Step("segment", segment=segment, descendant=isinstance(segment, JSONPathRecursiveDescentSegment)))
    return tuple(steps)


# Records ---------------------------------------------------------------------------------------

Chain = tuple[Any, ...]


def select_records(document: Any, path: CompiledPath, *, parents: bool) -> tuple[list[Any], list[Chain] | None]:
    """The records a records path selects, and with ``parents`` each record's enclosing records, outermost first.

    :raises ResponseMappingError: a member the path names is absent (or null) wherever the
        path looks for it, or a step meets a value of the wrong kind: the response does not
        have the shape the mapping expects. An empty array or a filter that matches
        nothing is no error: it gives no records.
    """
    found = _resolve(path, [(document, ())], strict=True, track=parents)
    if path.keys is not None:  # a singular path: the array it points at holds the records
        value = found[0][0] if found else None
        if value is None:
            why = "it is null" if found else "the index is out of range"
            raise ResponseMappingError(f"outbound mapping: the records path {path.source!r} matched nothing: {why}")
        records = value if type(value) is list else [value]
        return records, [()] * len(records) if parents else None
    records = [value for value, _ in found]
    if not parents:
        return records, None
    last_multi = not path.steps[-1].singular
    return records, [chain[:-1] if last_multi else chain for _, chain in found]


def _resolve(
    path: CompiledPath, nodes: list[tuple[Any, Chain]], *, strict: bool, track: bool
) -> list[tuple[Any, Chain]]:
    """Walk ``path``'s steps from ``nodes``; each node carries the chain of records it descends from."""
    for number, step in enumerate(path.steps):
        if step.kind == "segment":
            found = _library_step(step, nodes, track)
        else:
            found = _native_step(step, nodes, track)
            if strict and nodes and not found:
                _explain_nothing(path, number, nodes)
        nodes = found
    return nodes


def _native_step(step: Step, nodes: list[tuple[Any, Chain]], track: bool) -> list[tuple[Any, Chain]]:
    """A name, index or wildcard step; a wildcard's matches are records, so they join the chain when tracked."""
    key = step.key
    if step.kind == "name":
        return [(node[key], chain) for node, chain in nodes if type(node) is dict and key in node]
    if step.kind == "index":
        index: int = key  # type: ignore[assignment]
        return [(node[index], chain) for node, chain in nodes if type(node) is list and -len(node) <= index < len(node)]
    found: list[tuple[Any, Chain]] = []
    for node, chain in nodes:
        if type(node) is dict or type(node) is list:
            children = node.values() if type(node) is dict else node
            if track:
                found += [(child, (*chain, child)) for child in children]
            else:
                found += zip(children, repeat(chain))
    return found


def _library_step(step: Step, nodes: list[tuple[Any, Chain]], track: bool) -> list[tuple[Any, Chain]]:
    from jsonpath_rfc9535.node import JSONPathNode

    found: list[tuple[Any, Chain]] = []
    for node, chain in nodes:
        start = JSONPathNode(value=node, location=(), parent=None, root=node)
        try:
            values = [match.value for match in step.segment.resolve([start])]
        except Exception as err:  # the library's own errors, e.g. its recursion limit
            raise ResponseMappingError(f"outbound mapping: JSONPath segment {step} failed: {err}") from None
        found += [(value, (*chain, value)) for value in values] if track else zip(values, repeat(chain))
    return found


def _explain_nothing(path: CompiledPath, number: int, nodes: list[tuple[Any, Chain]]) -> None:
    """Raise the error that says why step ``number`` of a records path found nothing, unless that is legitimate."""
    step = path.steps[number]
    where = "$" + "".join(map(str, path.steps[:number]))
    values = [node for node, _ in nodes]
    kinds = {type(value) for value in values}
    head = f"outbound mapping: the records path {path.source!r} matched nothing"
    if step.kind == "name":
        objects = [value for value in values if type(value) is dict]
        if objects:
            keys = {key for obj in objects for key in obj}
            hint = did_you_mean(str(step.key), keys)
            raise ResponseMappingError(f"{head}: member {step.key!r} is absent at {where}{hint}")
        raise ResponseMappingError(f"{head}: {where} is {_kind(values)}, not an object, so it has no {step.key!r}")
    if step.kind == "index" and list not in kinds:
        raise ResponseMappingError(f"{head}: {where} is {_kind(values)}, not an array")
    if step.kind == "wildcard" and not kinds & {dict, list}:
        raise ResponseMappingError(f"{head}: {where} is {_kind(values)}, not an array or object")


def _kind(values: list[Any]) -> str:
    value = values[0]
    if value is None:
        return "null"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", dict: "an object"}.get(
        type(value), "an array"
    )


# Singular paths: one value per document (pagination links, cursors and totals; job statuses and URLs).


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
    return read_compiled(singular_path(path, "path"), document)


def read_compiled(query: Any, document: Any) -> Any:
    """The value at a compiled singular path (from :func:`singular_path`), None when absent."""
    node = query.find_one(document)
    return None if node is None else node.value
