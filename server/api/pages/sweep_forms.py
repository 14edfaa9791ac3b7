"""The new-sweep form: a sweep's name and priority, the base spec (the new-run form's fields) and
a grid editor (a field and its values per row), parsed and validated as ``POST /sweeps`` does.

Errors are keyed by where the form shows them: a base field's name, ``grid-<row>`` for a grid
row, ``grid`` for the grid as a whole, ``name`` and ``priority``."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.exceptions import RequestValidationError

from server.api.pages import forms
from server.core.schemas import NOT_IN_GRID, RunSpec, SweepIn
from server.core.settings import Settings
from server.views import sweeps

# Rows of the grid editor (no script needed to add one).
GRID_ROWS = 4
# What an empty form offers: the original experiment's two weight decays against three seeds,
# small enough (synthetic data, 10 epochs of 5,000 samples) that one click costs minutes.
DEFAULT_GRID = (("weight_decay", "0, 0.001"), ("seed", "0, 1, 2"))
DEFAULT_BASE = {"dataset": "synthetic", "epochs": 10, "train_size": 5000, "test_size": 1000}
# A list field's values (hidden_sizes) are lists themselves: separated by semicolons.
LIST_SEPARATOR = ";"
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def base_fields() -> tuple[forms.SpecField, ...]:
    """The spec fields of the base (a member's name comes from the sweep's)."""
    return tuple(f for f in forms.spec_fields() if f.name not in NOT_IN_GRID)


def grid_fields() -> tuple[forms.SpecField, ...]:
    return base_fields()


def separator(spec_field: forms.SpecField) -> str:
    return LIST_SEPARATOR if spec_field.kind == "list" else ","


@dataclass
class SweepForm:
    """The form's texts: what the inputs show again after a refusal."""

    name: str = ""
    priority: str = "0"
    base: dict[str, str] = field(default_factory=dict)
    grid: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def empty(cls) -> "SweepForm":
        return cls(base=forms.form_values(DEFAULT_BASE), grid=list(DEFAULT_GRID)).padded()

    @classmethod
    def from_sweep(cls, name: str | None, base: Mapping[str, Any], grid: Mapping[str, list[Any]],
                   priority: int) -> "SweepForm":  # fmt: skip
        by_name = {f.name: f for f in grid_fields()}
        rows = [
            (f, f"{separator(by_name[f])} ".join(by_name[f].text(v) for v in values))
            for f, values in grid.items()
            if f in by_name
        ]
        return cls(name or "", str(priority), forms.form_values(base), rows).padded()

    def padded(self) -> "SweepForm":
        rows = self.grid + [("", "")] * max(0, GRID_ROWS - len(self.grid))
        return SweepForm(self.name, self.priority, self.base, rows)


def read(form: Any) -> SweepForm:
    """The submitted form (Starlette's FormData: grid rows repeat their names)."""
    texts = {k: v for k, v in form.items() if isinstance(v, str)}
    fields = [v for v in form.getlist("grid_field") if isinstance(v, str)]
    values = [v for v in form.getlist("grid_values") if isinstance(v, str)]
    rows = list(zip(fields, values + [""] * (len(fields) - len(values)), strict=False))
    base = {f.name: texts.get(f.name, "") for f in base_fields()}
    return SweepForm(texts.get("name", ""), texts.get("priority", "0"), base, rows).padded()


def _grid_value(spec_field: forms.SpecField, raw: str) -> Any:
    """One value of a grid row, as the JSON value the field takes (ValueError: what is wrong)."""
    text = raw.strip()
    if not text:
        raise ValueError("a value is empty")
    if spec_field.kind == "checkbox":
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise ValueError(f"{text!r} is not true or false")
    return forms._convert(spec_field, text)


def parse(
    submitted: SweepForm, settings: Settings
) -> tuple[SweepIn | None, list[RunSpec], dict[str, str]]:
    """The sweep and its members' specs, or every error at once by where the form shows it:
    the form's own (a row without a field, a value that is no number) and ``POST /sweeps``'s
    (sweeps.admit), positions 0-based as the API's (``seed[1]``)."""
    errors: dict[str, list[str]] = {}
    by_name = {f.name: f for f in grid_fields()}
    grid: dict[str, list[Any]] = {}
    rows: dict[str, int] = {}
    typed: set[tuple[str, int]] = set()  # grid values the form could not read
    for i, (name, raw) in enumerate(submitted.grid):
        if not name and not raw.strip():
            continue
        key = f"grid-{i}"
        if name not in by_name:
            errors.setdefault(key, []).append("choose the field this row varies")
            continue
        if name in grid:
            errors.setdefault(key, []).append(f"{name} is already varied in another row")
            continue
        spec_field = by_name[name]
        values = []
        for j, part in enumerate(raw.split(separator(spec_field))):
            try:
                values.append(_grid_value(spec_field, part))
            except ValueError as exc:
                errors.setdefault(key, []).append(f"{name}[{j}] = {part.strip()}: {exc}")
                typed.add((name, j))
                values.append(part)  # keeps the positions; its error is the form's
        grid[name], rows[name] = values, i
    base: dict[str, Any] = {}
    for spec_field in base_fields():
        if spec_field.name in grid:
            continue  # the grid's values win
        try:
            value = forms._convert(spec_field, submitted.base.get(spec_field.name, ""))
        except ValueError as exc:
            errors.setdefault(spec_field.name, []).append(str(exc))
            continue
        if value != spec_field.default:
            base[spec_field.name] = value
    try:
        priority = int(submitted.priority.strip() or "0")
    except ValueError:
        errors.setdefault("priority", []).append(
            f"{submitted.priority.strip()!r} is not a whole number"
        )
        priority = 0
    body = {"name": submitted.name.strip() or None, "base": base, "grid": grid}
    try:
        sweep, specs = sweeps.admit(body | {"priority": priority}, settings)
    except RequestValidationError as exc:
        for where, message in _located(exc.errors(), rows, typed):
            errors.setdefault(where, []).append(message)
    if errors:
        return None, [], {where: "; ".join(messages) for where, messages in errors.items()}
    return sweep, specs, {}


def _shown(value: Any) -> str:
    """A grid value as it was typed (0.001, not 0.001000…; lists comma-separated)."""
    if isinstance(value, list):
        return ", ".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _located(
    errors: Sequence[Any], rows: Mapping[str, int], typed: set[tuple[str, int]]
) -> list[tuple[str, str]]:
    """A 422's errors by where the form shows them, but those of values the form could not
    read (it said why)."""
    found = []
    for error in errors:
        loc = [part for part in error["loc"] if part != "body"]
        message = str(error["msg"]).removeprefix("Value error, ")
        if loc[:1] == ["grid"] and len(loc) > 1 and loc[1] in rows:
            field = str(loc[1])
            where = f"grid-{rows[field]}"
            if len(loc) > 2 and isinstance(loc[2], int):
                if (field, loc[2]) in typed:
                    continue
                message = f"{field}[{loc[2]}] = {_shown(error.get('input'))}: {message}"
        elif loc[:1] == ["grid"]:
            where = "grid"
        elif loc[:1] == ["base"] and len(loc) > 1:
            where = str(loc[1])
            if len(loc) > 2:
                message = f"{where}[{loc[2]}]: {message}"
        else:
            where = str(loc[0]) if loc else "grid"
        found.append((where, message))
    return found
