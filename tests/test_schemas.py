import pytest
from pydantic import ValidationError

from server.core.schemas import RunSpec


def test_defaults_are_the_seeds():
    spec = RunSpec()
    assert spec.weight_decay == 0 and spec.epochs == 50 and spec.batch_size == 64
    assert spec.tolerances == [0.0, 0.001, 0.01, 0.1]
    assert spec.hidden_sizes == [512, 512, 512]


def test_tolerances_sorted_and_distinct():
    assert RunSpec(tolerances=[0.1, 0, 0.01]).tolerances == [0, 0.01, 0.1]
    with pytest.raises(ValidationError, match="distinct"):
        RunSpec(tolerances=[0.1, 0.1])


@pytest.mark.parametrize(
    "field,value",
    [
        ("weight_decay", -1),
        ("weight_decay", float("nan")),
        ("epochs", 0),
        ("epochs", 1001),
        ("tolerances", []),
        ("tolerances", [float("inf")]),
        ("tolerances", [-0.1]),
        ("momentum", 1.0),
        ("learning_rate", 0),
        ("batch_size", 8193),
        ("hidden_sizes", []),
        ("hidden_sizes", [0]),
        ("optimizer", "rmsprop"),
        ("name", "x" * 201),
    ],
)
def test_invalid_fields_are_named(field, value):
    with pytest.raises(ValidationError) as exc:
        RunSpec(**{field: value})
    assert exc.value.errors()[0]["loc"][0] == field


def test_unknown_fields_refused():
    with pytest.raises(ValidationError, match="extra"):
        RunSpec(wd=0.1)
