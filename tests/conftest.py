"""Shared test setup: one torch thread (tests are small; threads only add overhead on 2 cores)."""

import torch

torch.set_num_threads(1)
