"""The ground floor every other package builds on: atomic file writes and the pieces all score networks share.

It imports nothing of this project; `equivariant`, `samplers`, `envs` and `agents` stand on it, in that order.
"""
