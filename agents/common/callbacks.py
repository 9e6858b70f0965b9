"""SB3 callbacks that write checkpoints atomically."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback

from core.io import atomic_save


class CheckpointCallback(BaseCallback):
    """Save ``<save_dir>/model_<timesteps>_steps.zip`` every ``save_freq`` environment steps (over all envs)."""

    def __init__(self, save_freq: int, save_dir: str | Path, verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq <= 0:
            raise ValueError(f"save_freq must be positive, got {save_freq}")
        self.save_freq = save_freq
        self.save_dir = Path(save_dir)
        self._last_save = 0

    def _on_training_start(self) -> None:
        self._last_save = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_save >= self.save_freq:
            self._last_save = self.num_timesteps
            path = atomic_save(self.model, self.save_dir / f"model_{self.num_timesteps}_steps.zip")
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
