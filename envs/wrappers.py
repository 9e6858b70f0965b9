"""Small Gymnasium wrappers that make third-party tasks speak SB3's conventions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class SuccessToIsSuccess(gym.Wrapper):
    """Copy ``info["success"]`` to ``info["is_success"]`` so SB3 logs ``rollout/`` and ``eval/success_rate``."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "success" in info:
            info["is_success"] = bool(info["success"])
        return obs, reward, terminated, truncated, info
