"""The one config idiom of the library's algorithms: an algorithm's own knobs are the fields of a frozen dataclass
(``DQSConfig``, ``GoalConfig``, ...), reached as SB3-style constructor keywords and ``--hyperparams`` keys."""

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


def with_overrides(base: ConfigT, overrides: dict[str, Any], owner: str) -> ConfigT:
    """``dataclasses.replace(base, **overrides)``, with a did-you-mean TypeError naming the unknown keys."""
    unknown = unknown_keys(sorted(overrides), (field.name for field in dataclasses.fields(base)))  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"{owner} got unknown keyword arguments {unknown}; its knobs are the fields of {type(base).__name__}.")
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
