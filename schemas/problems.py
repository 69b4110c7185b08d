"""How a refused request is said: one ``<where>: <problem>`` line per pydantic error. An unknown field
names the closest known one, as an unknown ``GENQ_`` setting does (``optons: unknown field; did you mean
options?``), at any depth (``options.temprature``); a missing or unknown ``kind`` lists the kinds."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

UNKNOWN_FIELD = "unknown field"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was most likely meant to be (difflib's choice, as for settings), or None."""
    found = difflib.get_close_matches(name, sorted(set(known)), n=1)
    return found[0] if found else None


def unknown_field(name: str, known: Iterable[str]) -> str:
    """``unknown field``, and the closest known name when one is close: ``…; did you mean options?``."""
    close = closest(name, known)
    return f"{UNKNOWN_FIELD}; did you mean {close}?" if close else UNKNOWN_FIELD


def unknown_kind(value: Any, kinds: Iterable[str]) -> str:
    """The problem of a ``kind`` that is missing (or null) or names no kind: ``missing; one of …``."""
    said = "missing" if value is None else f"{value!r} is unknown"
    return f"{said}; one of {', '.join(kinds)}"


def field_problem(err: ErrorDetails, loc: Sequence[int | str], model: type[BaseModel] | None) -> str:
    """``<where>: <problem>`` of one error of validating ``model``, ``loc`` being where it is from the
    model (the error's own ``loc`` less any union tag before it)."""
    return f"{'.'.join(str(p) for p in loc) or 'request'}: {problem_of(err, loc, model)}"


def problem_of(err: ErrorDetails, loc: Sequence[int | str], model: type[BaseModel] | None) -> str:
    """What ``field_problem`` says is wrong. Without ``model``, an unknown field is said without a guess."""
    if err["type"] != "extra_forbidden" or not loc:
        return err["msg"]
    return unknown_field(str(loc[-1]), fields_at(model, loc[:-1]) if model is not None else [])


def fields_at(model: type[BaseModel], path: Sequence[int | str]) -> list[str]:
    """The names a JSON object takes at ``path`` in ``model`` (its aliases where it has them); none
    where the path leads to no model."""
    annotations: list[Any] = [model]
    for part in path:
        annotations = [inner for a in annotations for inner in _below(a, part)]
    return [name for a in annotations for name in _names(a)]


def _members(annotation: Any) -> list[Any]:
    """``annotation`` without ``Annotated`` and ``None``, split into a union's members."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _below(annotation: Any, part: int | str) -> list[Any]:
    """What ``part`` of a value of ``annotation`` is: a field of a model, an item of a list, a value of a
    dict; pydantic puts a union member's name in a location too."""
    found: list[Any] = []
    for member in _members(annotation):
        model, origin, args = _model(member), typing.get_origin(member), typing.get_args(member)
        if model is not None:
            found += [f.annotation for name, f in model.model_fields.items() if part in (name, f.alias)]
            found += [model] if part == model.__name__ else []
        elif origin in (dict, Mapping) and len(args) == 2:
            found.append(args[1])
        elif origin in (list, set, frozenset, Sequence) and args and isinstance(part, int):
            found.append(args[0])
        elif origin is tuple and isinstance(part, int):  # tuple[X, ...] or tuple[X, Y]
            found += [args[0]] if args[1:] == (Ellipsis,) else list(args[part : part + 1])
    return found


def _names(annotation: Any) -> list[str]:
    return [
        f.alias or name
        for model in map(_model, _members(annotation))
        if model is not None
        for name, f in model.model_fields.items()
    ]
