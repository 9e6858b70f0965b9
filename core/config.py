"""The one config idiom of the library's models: a model's own knobs are the fields of a frozen dataclass
(``DQSConfig``, ``IDEMConfig``, ``PINNSolverConfig``, ...), reached as constructor keywords and ``--hyperparams`` keys;
an unknown key is rejected one way everywhere (`UnknownKeyError`, with the closest known names)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

ConfigT = TypeVar("ConfigT")


def unknown_keys(given: Iterable[str], known: Iterable[str], cutoff: float = 0.6) -> str:
    """The keys of ``given`` not in ``known``, each with its closest known names: "'lr' (did you mean ...?); ...";
    empty when every key is known."""
    known = set(known)
    hints = []
    for key in (key for key in given if key not in known):
        close = difflib.get_close_matches(key, known, n=3, cutoff=cutoff)
        hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return "; ".join(hints)


class UnknownKeyError(TypeError, ValueError):
    """A key nobody accepts: an unknown keyword argument (a TypeError, as Python's own) that is also a bad value of
    ``--hyperparams`` and the like (a ValueError). The one error every part of the library raises for it."""


def reject_unknown_keys(given: Iterable[str], known: Iterable[str], owner: str, what: str, hint: str,
                        cutoff: float = 0.6) -> None:  # fmt: skip
    """Raise `UnknownKeyError` "<owner> got unknown <what> 'k' (did you mean ...?); <hint>" when a key of ``given``
    is not in ``known``."""
    unknown = unknown_keys(given, known, cutoff)
    if unknown:
        raise UnknownKeyError(f"{owner} got unknown {what} {unknown}; {hint}")


def config_keys(config_class: type) -> list[str]:
    """The field names of a config dataclass."""
    return [field.name for field in dataclasses.fields(config_class)]


def with_overrides(base: ConfigT, overrides: dict[str, Any], owner: str) -> ConfigT:
    """``dataclasses.replace(base, **overrides)``, rejecting unknown keys with `reject_unknown_keys`."""
    config_class = type(base)
    reject_unknown_keys(sorted(overrides), config_keys(config_class), owner, "keyword arguments",
                        f"its knobs are the fields of {config_class.__name__}.")  # fmt: skip
    return dataclasses.replace(base, **overrides)  # type: ignore[type-var]


def fold_config_attributes(model: Any, shared: tuple[str, ...] = ()) -> None:
    """Move config fields set as plain attributes into ``model.config``: SB3's ``load(path, **kwargs)`` sets its
    keywords as attributes (``DQS.load(path, temperature=0.1)``). ``shared`` names fields that are also attributes
    SB3 itself keeps (DQS's ``learning_starts``); they are folded in when they differ from the config."""
    config = model.config
    knobs = {}
    for field in dataclasses.fields(config):
        if field.name in shared:
            if getattr(model, field.name) != getattr(config, field.name):
                knobs[field.name] = getattr(model, field.name)
        elif field.name in model.__dict__:
            knobs[field.name] = model.__dict__.pop(field.name)
    if knobs:
        model.config = dataclasses.replace(config, **knobs)


def _field_types(config_class: type) -> dict[str, Any]:
    """Each field's annotation resolved in its class's module (annotations are strings under ``from __future__ import
    annotations``); a field whose annotation cannot be resolved there is left out."""
    resolved = {}
    for klass in reversed(config_class.__mro__):
        namespace = vars(sys.modules[klass.__module__])
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            try:
                resolved[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
            except (NameError, AttributeError, TypeError, SyntaxError):
                resolved.pop(name, None)
    return resolved


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``A | B``, ``Optional[A]``), else the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


class CheckedConfig:
    """Base of the library's config dataclasses: ``__post_init__`` rejects, with one line naming the field, a value
    outside a ``Literal`` field's choices and a non-finite number where a float is expected (``1e999`` parses as inf).
    A subclass with its own ``__post_init__`` calls this one first."""

    def __post_init__(self) -> None:
        for name, annotation in _field_types(type(self)).items():
            if name not in {field.name for field in dataclasses.fields(self)}:  # type: ignore[arg-type]
                continue
            value, members = getattr(self, name), _members(annotation)
            choices = [choice for member in members if typing.get_origin(member) is Literal
                       for choice in typing.get_args(member)]  # fmt: skip
            allowed_others = [member for member in members if typing.get_origin(member) is not Literal]
            if choices and value not in choices and not any(_is_instance(value, m) for m in allowed_others):
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
            if float in members and isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")


def require_positive(config: Any, names: Iterable[str]) -> None:
    """A ValueError naming the first of ``names`` whose value on ``config`` is not > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")


def require_non_negative(config: Any, names: Iterable[str]) -> None:
    """A ValueError naming the first of ``names`` whose value on ``config`` is < 0."""
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)!r}")


def _is_instance(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the plain type ``annotation`` (None for NoneType; other annotations: no)."""
    if annotation is type(None):
        return value is None
    return isinstance(annotation, type) and isinstance(value, annotation)
