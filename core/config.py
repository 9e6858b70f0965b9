"""The one config idiom of the library's models: a model's own knobs are the fields of a frozen dataclass
(``DQSConfig``, ``IDEMConfig``, ``PINNSolverConfig``, ...), reached as constructor keywords and ``--hyperparams`` keys;
an unknown key is rejected one way everywhere (`UnknownKeyError`, with the closest known names)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

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
