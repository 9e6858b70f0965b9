"""Shared test setup: one torch thread (tests are small; threads only add overhead on 2 cores), and one local Ray
for every test that runs a sweep or a benchmark (starting Ray takes seconds). The suite runs on two pytest-xdist
workers; the tests that use the local Ray are grouped onto one of them, so that one Ray serves them all."""

import pytest
import ray
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "local_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("local_ray"))


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray of two CPUs for the whole session; the sweep engine joins it instead of starting its own."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
