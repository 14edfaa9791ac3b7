"""The new-run form, derived from RunSpec's JSON schema: inputs, HTML constraints, rules, parsing.

A field added to RunSpec shows up in the form with its default and rule; the server validates
the submitted spec with RunSpec itself and the resource limits, as POST /runs does."""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import ValidationError

from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.store import limits

# Lists are typed as comma-separated numbers; these patterns are the page's first check.
# (Browsers compile a pattern with the v flag, where a class cannot hold a bare "-".)
_SIGN = r"(\+|-)?"
_NUMBER = rf"{_SIGN}(\d+\.?\d*|\.\d+)([eE]{_SIGN}\d+)?"
_INTEGER = rf"{_SIGN}\d+"


def _list_pattern(item: str) -> str:
    return rf"\s*{item}(\s*,\s*{item})*\s*"


@dataclass(frozen=True)
class SpecField:
    name: str
    # "text", "number", "integer", "select", "checkbox" or "list" (of number or integer: item).
    kind: str
    default: Any
    optional: bool
    rule: str
    description: str
    # HTML attributes that check the rule in the page (min, max, step, maxlength, pattern, …).
    attrs: dict[str, str]
    choices: tuple[str, ...] = ()
    item: str = ""

    def text(self, value: Any) -> str:
        """``value`` as the input shows it."""
        if value is None or value is False:
            return ""
        if value is True:
            return "on"  # what a ticked checkbox sends
        if isinstance(value, list):
            return ", ".join(_number(v) for v in value)
        return _number(value) if isinstance(value, float) else str(value)

    @property
    def rule_text(self) -> str:
        """The rule and the default as one sentence (the description, a sentence of its own,
        says what the field means)."""
        if self.kind == "checkbox":
            default = "yes" if self.default else "no"
        else:
            default = self.text(self.default) or "none"
        return f"{self.rule[:1].upper()}{self.rule[1:]}; default {default}."


def _number(value: Any) -> str:
    # repr: the shortest text that reads back as the same float (0.001, not 0.0010000000000000002).
    return repr(value) if isinstance(value, float) else str(value)


def _bounds(schema: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The rule's words and the HTML min/max for a number schema."""
    words, attrs = [], {}
    for key, sign, attr in (
        ("minimum", "≥", "min"),
        ("exclusiveMinimum", ">", "min"),
        ("maximum", "≤", "max"),
        ("exclusiveMaximum", "<", "max"),
    ):
        if key in schema:
            words.append(f"{sign} {schema[key]}")
            # HTML has no exclusive bounds: the server's check refuses the bound itself.
            attrs[attr] = str(schema[key])
    return words, attrs


def _field(name: str, schema: Mapping[str, Any]) -> SpecField:
    variants = schema.get("anyOf", [schema])
    optional = any(v.get("type") == "null" for v in variants)
    typed = next(v for v in variants if v.get("type") != "null")
    kind = typed.get("type", "string")
    default = schema.get("default")
    attrs: dict[str, str] = {}
    choices: tuple[str, ...] = ()
    item = ""
    if "enum" in typed:
        kind, choices = "select", tuple(typed["enum"])
        rule = "one of " + ", ".join(choices)
    elif kind == "boolean":
        kind, rule = "checkbox", "yes or no"
    elif kind in ("number", "integer"):
        words, attrs = _bounds(typed)
        attrs["step"] = "1" if kind == "integer" else "any"
        rule = ("a whole number" if kind == "integer" else "a number") + (
            " " + " and ".join(words) if words else ""
        )
    elif kind == "array":
        item = typed["items"]["type"]
        words, _ = _bounds(typed["items"])
        attrs["pattern"] = _list_pattern(_INTEGER if item == "integer" else _NUMBER)
        noun = "whole numbers" if item == "integer" else "numbers"
        if typed.get("uniqueItems"):
            noun = "distinct " + noun
        rule = f"{typed.get('minItems', 0)} to {typed.get('maxItems', '∞')} {noun}"
        rule += (" " + " and ".join(words) if words else "") + ", separated by commas"
        kind = "list"
    else:
        kind, rule = "text", "text"
        if "maxLength" in typed:
            attrs["maxlength"] = str(typed["maxLength"])
            rule += f" of at most {typed['maxLength']} characters"
    if optional:
        rule += ", or empty"
    elif kind != "checkbox":
        attrs["required"] = ""
    return SpecField(
        name=name,
        kind=kind,
        default=default,
        optional=optional,
        rule=rule,
        description=_sentence(schema.get("description", "")),
        attrs=attrs,
        choices=choices,
        item=item,
    )


def _sentence(text: str) -> str:
    """``text`` capitalised and ending in one full stop (descriptions end in one, or none)."""
    text = text.strip().rstrip(".")
    return f"{text[:1].upper()}{text[1:]}." if text else ""


@cache
def spec_fields() -> tuple[SpecField, ...]:
    properties = RunSpec.model_json_schema()["properties"]
    return tuple(_field(name, schema) for name, schema in properties.items())


def _convert(field: SpecField, raw: str) -> Any:
    """The form's text as the JSON value the field takes; ValueError says what is wrong."""
    if field.kind == "checkbox":
        return bool(raw)
    if not raw.strip():
        if field.optional:
            return None
        raise ValueError("enter a value")
    if field.kind == "list":
        return [_scalar(field.item, part) for part in raw.split(",")]
    return _scalar(field.kind, raw)


def _scalar(kind: str, raw: str) -> Any:
    text = raw.strip()
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    return text


def parse_spec(
    form: Mapping[str, str], settings: Settings
) -> tuple[RunSpec | None, dict[str, str]]:
    """The spec the form describes, or the error message of each field that is wrong.

    The messages are RunSpec's and the resource limits' own, as a 422 of POST /runs has them."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in spec_fields():
        try:
            values[field.name] = _convert(field, form.get(field.name, ""))
        except ValueError as exc:
            # The default stands in, so that RunSpec still judges every other field.
            errors[field.name] = str(exc)
            values[field.name] = field.default
    try:
        spec = RunSpec.model_validate(values)
    except ValidationError as exc:
        return None, _by_field(exc.errors()) | errors
    if errors:
        return None, errors
    refused = _by_field(limits.violations(spec, settings))
    return (None, refused) if refused else (spec, {})


def _by_field(errors: list[Any]) -> dict[str, str]:
    """pydantic/FastAPI error dicts → field name → its messages (loc may start with "body")."""
    found: dict[str, list[str]] = {}
    for error in errors:
        loc = [part for part in error["loc"] if part != "body"]
        # pydantic prefixes a validator's own message; the field it sits beside says as much.
        message = error["msg"].removeprefix("Value error, ")
        if len(loc) > 1:
            message = f"item {loc[1]}: {message}"
        found.setdefault(str(loc[0]), []).append(message)
    return {field: "; ".join(messages) for field, messages in found.items()}


def form_values(spec: Mapping[str, Any]) -> dict[str, str]:
    """A spec (a run's, or the defaults) as the inputs' texts."""
    return {f.name: f.text(spec.get(f.name, f.default)) for f in spec_fields()}
