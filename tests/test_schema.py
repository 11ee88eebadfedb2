"""schema.py: each checker accepts what it declares and names the field of the first problem."""

from dataclasses import dataclass

import pytest

from rnnlab import schema as s


@pytest.mark.parametrize("checker, good, bad, problem", [
    (s.Int(0, 10), 3, True, "must be an integer"),
    (s.Int(0, 10), 3, 11, "must be at most 10"),
    (s.Number(0), 0.5, float("nan"), "finite"),
    (s.Str(pattern=r"[a-z]+"), "abc", "ABC", "unexpected form"),
    (s.Str(choices=["a", "b"]), "a", "c", "must be one of"),
    (s.Optional(s.Int()), None, "x", "must be"),
    (s.ListOf(s.Int(), max_len=2), [1, 2], [1, 2, 3], "at most 2"),
])
def test_a_checker_accepts_its_values_and_names_the_field_of_a_bad_one(checker, good, bad, problem):
    checker.check(good, "x")
    with pytest.raises(s.SchemaError, match="field a.b") as err:
        checker.check(bad, "a.b")
    assert problem in str(err.value)


def test_an_object_refuses_unknown_and_missing_keys_unless_they_may_be_missing():
    obj = s.Object({"n": s.Int(), "m": s.Int()}, may_be_missing=["m"])
    obj.check({"n": 1}, "")
    with pytest.raises(s.SchemaError, match="field n"):
        obj.check({"m": 1}, "")
    with pytest.raises(s.SchemaError, match="extra"):
        obj.check({"n": 1, "extra": 2}, "")


def test_a_dataclass_schema_follows_the_field_types():
    @dataclass
    class Config:
        size: int = 1
        rate: float | None = None
        name: str = "x"

    schema = s.dataclass_schema(Config, defaults_may_be_missing=True)
    schema.check({"size": 2, "rate": 0.1}, "")
    with pytest.raises(s.SchemaError, match="field rate"):
        schema.check({"size": 2, "rate": "fast"}, "")
