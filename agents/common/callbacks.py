"""SB3 callbacks of the library's runs: checkpoints and the best model written atomically, a stop flag checked at
every step, evaluations reported to a caller."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.common.replay import save_replay_buffer
from core.io import atomic_save, atomic_write


class CheckpointCallback(BaseCallback):
    """Save ``<save_dir>/model_<timesteps>_steps.zip`` every ``save_freq`` environment steps (over all envs), and with
    ``save_replay_buffer`` the off-policy replay buffer beside it (``replay_buffer_<timesteps>_steps.pkl``)."""

    def __init__(self, save_freq: int, save_dir: str | Path, verbose: int = 0, save_replay_buffer: bool = False) -> None:
        super().__init__(verbose)
        if save_freq <= 0:
            raise ValueError(f"save_freq must be positive, got {save_freq}")
        self.save_freq = save_freq
        self.save_dir = Path(save_dir)
        self.save_replay_buffer = save_replay_buffer
        self._last_save = 0

    def _on_training_start(self) -> None:
        self._last_save = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_save >= self.save_freq:
            self._last_save = self.num_timesteps
            path = atomic_save(self.model, self.save_dir / f"model_{self.num_timesteps}_steps.zip")
            if self.save_replay_buffer and isinstance(self.model, OffPolicyAlgorithm):
                buffer = self.save_dir / f"replay_buffer_{self.num_timesteps}_steps.pkl"
                atomic_write(buffer, lambda tmp: save_replay_buffer(self.model, tmp))
            if self.verbose:
                print(f"Saved checkpoint {path}")
        return True


class SaveBestCallback(BaseCallback):
    """Used as ``EvalCallback(callback_on_new_best=...)``: save the new best model atomically."""

    def __init__(self, path: str | Path, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.path = Path(path)

    def _on_step(self) -> bool:
        atomic_save(self.model, self.path)
        if self.verbose:
            print(f"New best model saved to {self.path}")
        return True


class StopOnFlag(BaseCallback):
    """Ends SB3's learn at the next step boundary once ``stop`` is set (train.py sets it on the first Ctrl-C or
    SIGTERM, so the saved state is never mid-step)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def _on_step(self) -> bool:
        return not self.stop.is_set()


class ReportEvaluation(BaseCallback):
    """Child of an `EvalCallback` (``callback_after_eval``): passes (timesteps, mean return) of every evaluation to
    ``report`` (the sweep engine hands them to its scheduler)."""

    def __init__(self, report: Callable[[int, float], None]) -> None:
        super().__init__()
        self.report = report

    def _on_step(self) -> bool:
        self.report(self.num_timesteps, float(self.parent.last_mean_reward))  # type: ignore[union-attr]
        return True
