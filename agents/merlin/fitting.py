"""The minibatch Adam loop that trains the noise models' auxiliary networks (reverse model, state encoder)."""

from __future__ import annotations

from collections.abc import Callable

import torch as th
from torch import Tensor, nn


def fit_minibatches(
    model: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    n_items: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    generator: th.Generator,
) -> list[float]:
    """Adam on ``loss_fn(indices)`` over shuffled minibatches of ``range(n_items)`` for ``epochs`` passes; returns the
    mean loss of each epoch. Raises a FloatingPointError naming the model when a loss is not finite."""
    optimizer = th.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    history = []
    for _ in range(epochs):
        losses = []
        for indices in th.randperm(n_items, generator=generator).split(batch_size):
            loss = loss_fn(indices)
            if not th.isfinite(loss):
                raise FloatingPointError(
                    f"The {type(model).__name__} training loss became {loss.item()}; lower its learning rate "
                    f"(noise_kwargs['learning_rate'], now {learning_rate})."
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        history.append(sum(losses) / len(losses))
    model.eval()
    return history
