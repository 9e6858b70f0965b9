"""Gymnasium environments and name resolution for diffusion-baselines."""

from envs.registry import ENV_ALIASES, available_env_ids, make_env, resolve_env_id

__all__ = ["ENV_ALIASES", "available_env_ids", "make_env", "resolve_env_id"]
