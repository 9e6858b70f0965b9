"""Replay buffers written with their filled rows only. SB3 pickles a buffer's whole capacity: every periodic checkpoint
of a 1M-transition buffer is tens of MB after a few hundred steps. `save_replay_buffer` pickles only the rows written
so far, and the file unpickles (through SB3's own ``load_replay_buffer`` too) as the full-capacity buffer again, so
training continues exactly as if the whole buffer had been saved."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm


def _restore(buffer_class: type[ReplayBuffer], state: dict[str, Any], trimmed: list[str], capacity: int) -> ReplayBuffer:
    """The buffer of ``state`` with every trimmed array (or dict of arrays) padded back to ``capacity`` rows."""

    def pad(array: np.ndarray) -> np.ndarray:
        full = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
        full[: len(array)] = array
        return full

    for name in trimmed:
        value = state[name]
        state[name] = {key: pad(item) for key, item in value.items()} if isinstance(value, dict) else pad(value)
    buffer = buffer_class.__new__(buffer_class)
    buffer.__dict__.update(state)
    return buffer


class _FilledRows:
    """Pickles as the filled rows of ``buffer``; unpickles as the full buffer (`_restore`)."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer

    def __reduce__(self) -> tuple[Any, ...]:
        buffer, capacity = self.buffer, self.buffer.buffer_size
        rows = capacity if buffer.full else buffer.pos

        def rows_of(value: Any) -> bool:
            arrays = value.values() if isinstance(value, dict) and value else [value]
            return all(isinstance(item, np.ndarray) and item.shape[:1] == (capacity,) for item in arrays)

        state, trimmed = dict(vars(buffer)), []
        for name, value in vars(buffer).items():
            if rows_of(value):
                state[name] = {k: v[:rows] for k, v in value.items()} if isinstance(value, dict) else value[:rows]
                trimmed.append(name)
        return _restore, (type(buffer), state, trimmed, capacity)


def save_replay_buffer(model: OffPolicyAlgorithm, path: str | Path) -> None:
    """Write ``model``'s replay buffer to ``path`` with its filled rows only (load it with SB3's
    ``model.load_replay_buffer``)."""
    with Path(path).open("wb") as handle:
        pickle.dump(_FilledRows(model.replay_buffer), handle, protocol=pickle.HIGHEST_PROTOCOL)
