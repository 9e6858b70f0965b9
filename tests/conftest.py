"""Shared test setup: one torch thread (tests are small; threads only add overhead on 2 cores), and one local Ray
for every test that runs a sweep or a benchmark (starting Ray takes seconds). The suite runs on two pytest-xdist
workers, each with its own private local Ray (address="local": the two never join each other)."""

import pytest
import ray
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray of two CPUs for the whole session; the sweep engine joins it instead of starting its own."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
