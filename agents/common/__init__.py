"""Run plumbing shared by every algorithm: run folders, atomic checkpoints, callbacks."""
