"""Checking untrusted JSON data against a declared shape before anything is built from it.

A checkpoint's JSON is data that rnnlab did not necessarily write: a user may have edited it, a disk may
have damaged it, someone may have crafted it. Every field is therefore checked -- its presence, its type,
its range -- against a *schema*, and the first problem becomes one :class:`RnnlabError` that names the
field by its path (``train.hidden_size``), what was wrong and what was expected.

A schema is plain data built from a few checkers:

    Int(lo, hi)            an int (not a bool) in [lo, hi]
    Number(lo, hi)         a finite int or float in [lo, hi]
    Str(pattern, choices)  a string, optionally matching a regular expression or one of some choices
    Bool()                 true or false
    Optional(checker)      null or what the checker accepts
    ListOf(checker, n)     a list of at most n items, each accepted by the checker
    Object({...}, may_be_missing)   a dict with exactly these keys; those in ``may_be_missing`` may be absent
    Any()                  anything (only where a later, more specific check follows)

:func:`dataclass_schema` derives an ``Object`` from a dataclass's annotated field types (``int``,
``float | None``, ``str``, ``bool``), so the schema of a config can never drift from the config itself.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing

from .errors import RnnlabError

MAX_INT = 2 ** 63 - 1


class SchemaError(RnnlabError):
    """A value does not have the declared shape; ``path`` names the field (``model.hidden_size``)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"field {path or '(top level)'} {problem}")
        self.path, self.problem = path, problem


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


class Checker:
    def check(self, value, path: str) -> None:
        raise NotImplementedError



class Any(Checker):
    def check(self, value, path):
        pass


class Int(Checker):
    def __init__(self, lo: int = -MAX_INT, hi: int = MAX_INT):
        self.lo, self.hi = lo, hi

    def check(self, value, path):
        if type(value) is not int:
            raise SchemaError(path, f"must be an integer, got {_type_name(value)}")
        if value > self.hi:
            raise SchemaError(path, f"must be at most {self.hi}, got {value}")
        if value < self.lo:
            raise SchemaError(path, f"must be at least {self.lo}, got {value}")


class Number(Checker):
    def __init__(self, lo: float = -math.inf, hi: float = math.inf):
        self.lo, self.hi = lo, hi

    def check(self, value, path):
        if type(value) not in (int, float):
            raise SchemaError(path, f"must be a number, got {_type_name(value)}")
        if not math.isfinite(value) or not self.lo <= value <= self.hi:
            raise SchemaError(path, f"must be a finite number in [{self.lo}, {self.hi}], got {value}")


class Str(Checker):
    def __init__(self, pattern: str | None = None, choices=None, max_len: int = 4096):
        self.pattern = re.compile(pattern) if pattern else None
        self.choices, self.max_len = (tuple(choices) if choices is not None else None), max_len

    def check(self, value, path):
        if type(value) is not str:
            raise SchemaError(path, f"must be a string, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise SchemaError(path, f"is longer than {self.max_len} characters")
        if self.choices is not None and value not in self.choices:
            raise SchemaError(path, f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise SchemaError(path, f"has an unexpected form: {value[:80]!r}")


class Bool(Checker):
    def check(self, value, path):
        if type(value) is not bool:
            raise SchemaError(path, f"must be true or false, got {_type_name(value)}")


class Optional(Checker):
    def __init__(self, inner: Checker):
        self.inner = inner

    def check(self, value, path):
        if value is not None:
            self.inner.check(value, path)


class ListOf(Checker):
    def __init__(self, item: Checker, max_len: int = 1_000_000):
        self.item, self.max_len = item, max_len

    def check(self, value, path):
        if type(value) is not list:
            raise SchemaError(path, f"must be a list, got {_type_name(value)}")
        if len(value) > self.max_len:
            raise SchemaError(path, f"has {len(value)} items, at most {self.max_len} are allowed")
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")


class Object(Checker):
    """A dict with exactly the declared keys; the keys in ``may_be_missing`` may be absent."""

    def __init__(self, fields: dict, may_be_missing=()):
        self.fields, self.may_be_missing = fields, frozenset(may_be_missing)

    def check(self, value, path):
        if type(value) is not dict:
            raise SchemaError(path, f"must be an object, got {_type_name(value)}")
        prefix = f"{path}." if path else ""
        unknown = sorted(set(value) - set(self.fields))
        if unknown:
            raise SchemaError(f"{prefix}{unknown[0]}", "is not a known field")
        for key, checker in self.fields.items():
            if key not in value:
                if key in self.may_be_missing:
                    continue
                raise SchemaError(f"{prefix}{key}", "is missing")
            checker.check(value[key], f"{prefix}{key}")


def _checker_for(annotation) -> Checker:
    """int -> Int, float -> Number, str -> Str, bool -> Bool, X | None -> Optional(X)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args and len(args) < len(typing.get_args(annotation)):
        return Optional(_checker_for(args[0]))
    simple = {int: Int(), float: Number(), str: Str(), bool: Bool()}
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no schema checker for annotation {annotation!r}")


def dataclass_schema(cls, overrides: dict | None = None, defaults_may_be_missing: bool = False) -> Object:
    """The ``Object`` schema of a dataclass's fields, from their type annotations. ``overrides`` replaces
    the checker of some fields (e.g. a narrower range); with ``defaults_may_be_missing`` a field that has a
    default may be absent (a document written before the field existed: the default applies)."""
    hints = typing.get_type_hints(cls)
    overrides = overrides or {}
    fields = {f.name: overrides.get(f.name) or _checker_for(hints[f.name]) for f in dataclasses.fields(cls)}
    missing_ok = [f.name for f in dataclasses.fields(cls) if defaults_may_be_missing and
                  (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)]
    return Object(fields, missing_ok)
