"""The typed fast path of the outbound mapping: decode a response straight into msgspec Structs. Pure.

A mapping whose records path is names with an optional final ``[*]``, and whose
columns read names and indexes from the record or the root (``$$``), compiles to
Struct types: one per captured object, one field per captured key, typed by the
column (``str`` with ``max_length`` through ``Meta``, ``int``, ``float``, ``bool``;
``Any`` for json, dates and times, which the column converts). ``msgspec`` then
decodes a page in one C pass, skipping every field the mapping ignores, and the
rows are finished by the same code as the slow path
(:func:`~airflow_campaign_provider.outbound.assemble`).

A value the types refuse (a string in an integer column, a null record, a missing
records array) is a ``ValidationError``: the page then goes the slow way, parse and
map, whose rejects and errors are the reference. So both paths give identical rows,
rejects and summaries; the typed one is only faster.

The depth and key-length limits apply to what is captured: containers held by
``Any`` fields are checked as deep as they sit in the response. Structs sit at a
depth the mapping fixes, and a mapping compiles only when that is within the limit.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from itertools import count
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from airflow_campaign_provider.column_types import MISSING
from airflow_campaign_provider.guardrails import MAX_JSON_DEPTH, check_json_shape
from airflow_campaign_provider.json_body import gc_paused
from airflow_campaign_provider.mapping_result import MappingResult, TableResult

if TYPE_CHECKING:
    from airflow_campaign_provider.outbound import Column, OutboundPlan, TablePlan


class _Unsupported(Exception):
    """The mapping has a shape the typed path does not compile; the slow path serves it."""


@dataclass(eq=False)
class _Object:
    """A captured JSON object: its captured keys. ``row_names`` maps keys to column names when Structs are rows."""

    fields: dict[str, _Object | _Array | _Leaf] = field(default_factory=dict)
    row_names: dict[str, str] | None = None
    types: dict[bool, Any] = field(default_factory=dict)  # by strictness
    attributes: dict[str, str] = field(default_factory=dict)

    def empty(self, strict: bool) -> Any:
        """An instance with every field unset: what an absent or null nested object reads as."""
        return self.types[strict]()


@dataclass(eq=False)
class _Array:
    """A captured JSON array: a records array, or one whose elements a column reads by index."""

    element: _Object | _Leaf
    records: bool = False


@dataclass(eq=False)
class _Leaf:
    """A captured value. ``strict`` is the type of a clean value, which needs no check after decoding."""

    type: Any
    strict: Any = None


_SIMPLE = {"integer": int, "float": float, "boolean": bool}


def _leaf_type(column: Column) -> Any:
    """The field type for a column: the types msgspec checks in C; ``Any`` where the column converts."""
    if column.type == "text":
        limit = column.options.max_length
        return (str if limit is None else Annotated[str, msgspec.Meta(max_length=limit)]) | None
    if column.type in _SIMPLE:
        return _SIMPLE[column.type] | None
    return Any


def _strict_type(column: Column) -> Any:
    """The type of a value that is final as decoded: present, not null, not empty; None when converted anyway."""
    if column.type == "text":
        return Annotated[str, msgspec.Meta(min_length=1, max_length=column.options.max_length)]
    return _SIMPLE.get(column.type)


@dataclass(frozen=True)
class _Reader:
    """Reads one column's raw values from decoded Structs, step by step; absent steps read as ``MISSING``."""

    steps: tuple[tuple[str, Any], ...]
    level: int
    captures_any: bool

    def read(self, nodes: list[Any], strict: bool) -> list[Any]:
        for kind, arg in self.steps:
            if kind == "struct":  # a nested object that may be absent or null reads as an empty one
                struct_type = arg.types[strict]
                if set(map(type, nodes)) != {struct_type}:
                    empty = arg.empty(strict)
                    nodes = [node if type(node) is struct_type else empty for node in nodes]
            elif kind == "attr":
                nodes = list(map(arg, nodes))
            else:
                nodes = [
                    node[arg] if type(node) is list and -len(node) <= arg < len(node) else MISSING for node in nodes
                ]
        return nodes


@dataclass(frozen=True)
class _TypedTable:
    plan: TablePlan
    path: tuple[tuple[_Object, Any], ...]  # (object expected, attribute getter) from the root to the records
    readers: tuple[_Reader, ...]
    rows_from_structs: bool


class TypedMapping:
    """A compiled typed decoder for an outbound plan whose every table qualifies.

    Tables whose columns are each one key of the record get two decoders: a strict one
    first, whose text, integer, float and boolean fields must be present, non-null and
    non-empty, so a clean page needs no check of those columns after decoding; then the
    lenient one, whose fields may be absent or null and are checked column by column.
    """

    def __init__(self, decoders: dict[bool, msgspec.json.Decoder[Any]], tables: dict[str, _TypedTable]) -> None:
        self._decoders = decoders
        self._tables = tables

    def map(self, content: bytes, *, url: str) -> MappingResult | None:
        """Decode and map a page; None when the types refuse it, and the caller takes the slow path."""
        with gc_paused():
            for strict, decoder in sorted(self._decoders.items(), reverse=True):
                try:
                    root = decoder.decode(content)
                except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
                    continue
                tables = {name: _map_table(root, table, url, strict) for name, table in self._tables.items()}
                if all(result is not None for result in tables.values()):
                    guards = {name: t.plan.guards for name, t in self._tables.items()}
                    return MappingResult(tables=tables, guards=guards)  # type: ignore[arg-type]
        return None


def _map_table(root: Any, table: _TypedTable, url: str, strict: bool) -> TableResult | None:
    from airflow_campaign_provider.outbound import assemble

    columns = table.plan.columns or ()
    records = root
    for node, get in table.path:
        if type(records) is not node.types[strict]:
            return None  # absent or null on the way: the slow path says what is wrong
        records = get(records)
    if type(records) is not list:
        return None
    if not records:
        return TableResult(rows=[], columns=tuple(column.name for column in columns))
    clean = strict and table.rows_from_structs
    raws: list[list[Any] | None] = [None] * len(columns)
    for number, (column, reader) in enumerate(zip(columns, table.readers, strict=True)):
        if clean and not reader.captures_any:
            continue  # validated in C: present, typed and not empty
        if column.path.context == "root":
            raws[number] = reader.read([root], strict) * len(records)
        else:
            raws[number] = reader.read(records, strict)
        if reader.captures_any:
            check_json_shape(raws[number], url=url, depth=reader.level - 1)
    if clean and _final_as_decoded(columns, raws):
        names = tuple(column.name for column in columns)
        rows = list(map(msgspec.structs.asdict, records))
        return TableResult(rows=rows, records=len(records), columns=names, present=set(names))
    for number, reader in enumerate(table.readers):
        if raws[number] is None:
            raws[number] = reader.read(records, strict)
    # When each Struct field is a column, the Structs are the rows if every value is final as decoded.
    structs = (lambda: list(map(msgspec.structs.asdict, records))) if table.rows_from_structs else None
    return assemble(columns, raws, len(records), rows_as_decoded=structs)  # type: ignore[arg-type]


def _final_as_decoded(columns: tuple[Column, ...], raws: list[list[Any] | None]) -> bool:
    """True when every column read so far keeps its values as they are: nothing to convert, empty or reject."""
    for column, values in zip(columns, raws, strict=True):
        if values is not None:
            rejected: dict[int, tuple[str, str]] = {}
            if column.values(values, rejected)[0] is not values or rejected:
                return False
    return True


def compile_typed(plan: OutboundPlan) -> TypedMapping | None:
    """Compile ``plan`` to msgspec types, or None when any table needs the slow path."""
    try:
        root = _Object()
        shapes = {name: _capture(root, table) for name, table in plan.tables.items()}
        names = count()
        decoders = {False: msgspec.json.Decoder(_build_types(root, names, strict=False))}
        if any(record.row_names is not None for _, record in shapes.values()):
            decoders[True] = msgspec.json.Decoder(_build_types(root, names, strict=True))
        tables = {name: _typed_table(root, plan.tables[name], *shape) for name, shape in shapes.items()}
    except _Unsupported:
        return None
    return TypedMapping(decoders, tables)


def _capture(root: _Object, table: TablePlan) -> tuple[tuple[str, ...], _Object]:
    """Add a table's records array and columns to the tree of captured objects; returns (records keys, record)."""
    path = table.records
    columns = table.columns
    if path is None or columns is None or table.flatten:
        raise _Unsupported
    steps = path.steps[:-1] if path.steps and path.steps[-1].kind == "wildcard" else path.steps
    keys = tuple(str(step.key) for step in steps)
    if not keys or any(step.kind != "name" for step in steps):
        raise _Unsupported  # a top-level array leaves no room for root columns: kept simple
    parent = root
    for key in keys[:-1]:
        parent = _child(parent, key, _Object)
    record = _Object()
    if keys[-1] in parent.fields:
        raise _Unsupported
    parent.fields[keys[-1]] = _Array(record, records=True)
    if _columns_are_fields(columns):
        record.row_names = {str(c.path.keys[0]): c.name for c in columns if c.path.keys}
    for column in columns:
        if column.path.context == "parent" or column.path.keys is None:
            raise _Unsupported
        _insert(root if column.path.context == "root" else record, column.path.keys, _leaf_type(column))
    if record.row_names is not None:
        for column in columns:
            leaf = record.fields[str(column.path.keys[0])]  # type: ignore[index]
            assert isinstance(leaf, _Leaf)
            leaf.strict = _strict_type(column)
    return keys, record


def _child(node: _Object, key: str, kind: type[_Object]) -> _Object:
    child = node.fields.setdefault(key, kind())
    if type(child) is not kind:
        raise _Unsupported
    return child


def _columns_are_fields(columns: tuple[Column, ...]) -> bool:
    """Each column one distinct key of the record, named as a Python identifier: then Structs can be the rows."""
    keys = [column.path.keys for column in columns]
    return (
        all(column.path.context == "record" for column in columns)
        and all(k is not None and len(k) == 1 and type(k[0]) is str for k in keys)
        and len(set(keys)) == len(keys)
        and all(c.name.isidentifier() and not keyword.iskeyword(c.name) and not c.name.startswith("_") for c in columns)
    )


def _insert(node: _Object, keys: tuple[str | int, ...], leaf: Any) -> None:
    """Add one column's key path below ``node``; a clash of shapes (object here, array there) is unsupported."""
    current: _Object | _Array = node
    for position, key in enumerate(keys):
        nxt = keys[position + 1] if position + 1 < len(keys) else None
        if type(key) is int:
            if not isinstance(current, _Array) or current.records or type(nxt) is int:
                raise _Unsupported
            if nxt is None:
                if isinstance(current.element, _Object):
                    raise _Unsupported
                return
            if not isinstance(current.element, _Object):
                if current.element.type is not None:
                    raise _Unsupported
                current.element = _Object()
            current = current.element
            continue
        if not isinstance(current, _Object):
            raise _Unsupported
        existing = current.fields.get(str(key))
        if nxt is None:
            if existing is None:
                current.fields[str(key)] = _Leaf(leaf)
            elif not isinstance(existing, _Leaf):
                raise _Unsupported
            elif existing.type != leaf:
                existing.type = Any  # two columns read one key with different types: capture it as it is
            return
        if type(nxt) is int:
            if existing is None:
                existing = current.fields[str(key)] = _Array(_Leaf(None))
            elif not isinstance(existing, _Array):
                raise _Unsupported
            current = existing
        else:
            current = _child(current, str(key), _Object)


def _build_types(node: _Object, names: count[int], *, strict: bool) -> Any:
    """Build the Struct type of ``node``, children first; unset fields read as ``msgspec.UNSET`` (``MISSING``).

    With ``strict``, a leaf that has a strict type is a required field of that type.
    """
    fields: list[tuple[Any, ...]] = []
    for number, (key, child) in enumerate(node.fields.items()):
        attribute = node.row_names[key] if node.row_names and key in node.row_names else f"f{number}"
        node.attributes[key] = attribute
        if isinstance(child, _Leaf) and strict and child.strict is not None:
            fields.append((attribute, child.strict))
            continue
        if isinstance(child, _Object):
            field_type: Any = _build_types(child, names, strict=strict) | None
        elif isinstance(child, _Array) and isinstance(child.element, _Object):
            element_type = _build_types(child.element, names, strict=strict)
            field_type = list[element_type] if child.records else list[element_type | None]  # type: ignore[valid-type]
        elif isinstance(child, _Array):
            field_type = list[Any]
        else:
            field_type = child.type
        fields.append((attribute, field_type | msgspec.UnsetType, msgspec.UNSET))
    rename = {attribute: key for key, attribute in node.attributes.items()}
    struct = msgspec.defstruct(f"Captured{next(names)}", fields, rename=rename, gc=False, kw_only=True)
    node.types[strict] = struct
    return struct


def _typed_table(root: _Object, table: TablePlan, keys: tuple[str, ...], record: _Object) -> _TypedTable:
    record_level = len(keys) + 2  # the root is level 1, the records array level len(keys) + 1
    if record_level - 1 + _depth(record) > MAX_JSON_DEPTH:
        raise _Unsupported  # the slow path reports the depth limit
    path = []
    node: Any = root
    for key in keys:
        path.append((node, attrgetter(node.attributes[key])))
        child = node.fields[key]
        node = child.element if isinstance(child, _Array) else child
    readers = tuple(
        _reader(root, column.path.keys or (), 1)
        if column.path.context == "root"
        else _reader(record, column.path.keys or (), record_level)
        for column in table.columns or ()
    )
    return _TypedTable(table, tuple(path), readers, record.row_names is not None)


def _reader(node: _Object, keys: tuple[str | int, ...], level: int) -> _Reader:
    steps: list[tuple[str, Any]] = []
    current: Any = node
    for key in keys:
        if type(key) is int:
            steps.append(("index", key))
            current = current.element
        else:
            steps.append(("attr", attrgetter(current.attributes[key])))
            current = current.fields[key]
        if isinstance(current, _Object):
            steps.append(("struct", current))
    captures_any = bool(keys) and (type(keys[-1]) is int or current.type is Any)
    return _Reader(tuple(steps), level + len(keys), captures_any)


def _depth(node: _Object | _Array | _Leaf) -> int:
    """Nesting levels a captured node spans (a leaf's own containers are checked when decoded)."""
    if isinstance(node, _Object):
        return 1 + max((_depth(child) for child in node.fields.values()), default=0)
    if isinstance(node, _Array):
        return 1 + _depth(node.element)
    return 0
