"""The ground floor every other package builds on: atomic file writes, the one config idiom (`core.config`), run
folders and their config.yaml (`core.run`), the base of models trained by gradient steps on a named target
(`core.trainer`), the CLI error wrapper and the pieces all score networks share.

It imports nothing of this project; `equivariant` and `pde`, then `samplers`, `envs`, `agents` and `runner` stand on
it, in that order (tests/test_layers.py).
"""
