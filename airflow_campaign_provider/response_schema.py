"""Response schema: load a JSON Schema once per task and report violations with their JSON paths.

``jsonschema`` is imported only when a task validates, never at DAG parse time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from airflow_campaign_provider.exceptions import MappingConfigError, ResponseSchemaError

MAX_REPORTED_VIOLATIONS = 10


def check_schema_argument(spec: Any) -> None:
    """Parse-time check of ``response_schema``: a dict, or the path of a ``.json`` file."""
    if spec is None or isinstance(spec, Mapping):
        return
    if not isinstance(spec, (str, Path)) or not str(spec).endswith(".json"):
        raise MappingConfigError("response_schema", "expected a JSON Schema dict or the path of a .json file")


def load_schema(spec: Mapping[str, Any] | str | Path, base_dir: Path | None) -> dict[str, Any]:
    """Return the schema dict; a relative path resolves from ``base_dir`` (the DAG file's folder)."""
    if isinstance(spec, Mapping):
        return dict(spec)
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MappingConfigError("response_schema", f"cannot read {str(path)!r}: {err.strerror}") from None
    except ValueError as err:
        raise MappingConfigError("response_schema", f"{str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(schema, dict):
        raise MappingConfigError("response_schema", f"{str(path)!r} does not hold a JSON object")
    return schema


def build_validator(schema: dict[str, Any]) -> Any:
    """A validator for ``schema``'s ``$schema`` dialect (Draft 2020-12 when absent), checked first."""
    from jsonschema import Draft202012Validator, SchemaError, validators

    validator_class = validators.validator_for(schema, default=Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except SchemaError as err:
        raise MappingConfigError("response_schema", f"not a valid JSON Schema: {err.message}") from None
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def validate_response(validator: Any, document: Any, *, url: str | None = None) -> None:
    """Raise :class:`ResponseSchemaError` naming the first violations, each with its JSON path."""
    errors = list(islice(validator.iter_errors(document), MAX_REPORTED_VIOLATIONS + 1))
    if not errors:
        return
    shown = errors[:MAX_REPORTED_VIOLATIONS]
    more = " (and more)" if len(errors) > MAX_REPORTED_VIOLATIONS else ""
    details = "; ".join(f"{error.json_path}: {_short(error.message)}" for error in shown)
    raise ResponseSchemaError(f"response schema: {len(shown)} violation(s){more}: {details}", url=url)


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
