"""Response schema: load a JSON Schema once per task and report violations with their JSON paths.

``jsonschema`` is imported only when a task validates, never at DAG parse time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from airflow_campaign_provider.exceptions import MappingConfigError, ResponseSchemaError
from airflow_campaign_provider.redaction import scrub

MAX_REPORTED_VIOLATIONS = 10


def check_schema_argument(spec: Any, base_dir: Path | None) -> None:
    """Parse-time check of ``response_schema``: a dict, or the path of a ``.json`` file that exists and parses.

    A relative path is read from ``base_dir`` (the DAG file's folder); without one, it is
    checked when the task runs. The schema itself is checked then too, since that needs
    ``jsonschema``.
    """
    if spec is None or isinstance(spec, Mapping):
        return
    if not isinstance(spec, (str, Path)) or not str(spec).endswith(".json"):
        raise MappingConfigError("response_schema", "expected a JSON Schema dict or the path of a .json file")
    if Path(spec).is_absolute() or base_dir is not None:
        load_schema(spec, base_dir)


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


def validate_response(validator: Any, document: Any, *, url: str | None = None, secrets: Iterable[str] = ()) -> None:
    """Raise :class:`ResponseSchemaError` naming the first violations: each reason and JSON path first.

    A reason is written from the schema keyword (``minItems``, ``type`` ...), not from
    ``jsonschema``'s message, which starts with the offending value and can carry much
    of the response. At most a short excerpt of a scalar value follows, scrubbed of
    ``secrets``.
    """
    errors = list(islice(validator.iter_errors(document), MAX_REPORTED_VIOLATIONS + 1))
    if not errors:
        return
    shown = errors[:MAX_REPORTED_VIOLATIONS]
    more = " (and more)" if len(errors) > MAX_REPORTED_VIOLATIONS else ""
    secrets = tuple(secrets)
    details = "; ".join(describe_violation(error, secrets) for error in shown)
    raise ResponseSchemaError(f"response schema: {len(shown)} violation(s){more}: {details}", url=url)


_REASONS = {
    "type": "type {}",
    "minItems": "at least {} item(s)",
    "maxItems": "at most {} item(s)",
    "minLength": "at least {} character(s)",
    "maxLength": "at most {} character(s)",
    "minProperties": "at least {} properties",
    "maxProperties": "at most {} properties",
    "minimum": "at least {}",
    "maximum": "at most {}",
    "exclusiveMinimum": "above {}",
    "exclusiveMaximum": "below {}",
    "multipleOf": "a multiple of {}",
    "enum": "one of {}",
    "const": "equal to {}",
    "pattern": "matching the pattern {}",
    "format": "in the {} format",
    "uniqueItems": "items all different",
}
_SHOWS_VALUE = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "enum",
    "const",
    "pattern",
    "format",
}
EXCERPT_CHARS = 40


def describe_violation(error: Any, secrets: tuple[str, ...] = ()) -> str:
    """``<reason> at <JSON path>``, then for a scalar value a short scrubbed excerpt of it."""
    keyword = error.validator
    if keyword in ("required", "dependentRequired", "additionalProperties", "unevaluatedProperties"):
        # These messages name properties, not the offending value.
        reason = error.message
    elif keyword in _REASONS:
        reason = "expected " + _REASONS[keyword].format(_short(json.dumps(error.validator_value, default=str)))
    else:
        reason = f"fails {keyword!r}"
    text = f"{reason} at {error.json_path}"
    instance = error.instance
    if keyword in _SHOWS_VALUE and (instance is None or isinstance(instance, (str, int, float, bool))):
        text += f" (value {_short(scrub(json.dumps(instance, ensure_ascii=False), secrets))})"
    return text


def _short(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
