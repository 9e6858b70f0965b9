"""Every config dataclass of the library checks its values where they enter (`core.config.CheckedConfig`): a value
outside a Literal field's choices and a non-finite float are refused with a line naming the field."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal

import pytest

from agents.dqs.dqs import DQSConfig
from agents.merlin.base import GoalConfig
from agents.merlin.baselines import WGCSLConfig
from agents.merlin.reverse_model import ReverseModelConfig
from agents.merlin.stitching import StitchingConfig
from causal.ilcm import ILCMConfig, Phase
from causal.models import CausalLearnerConfig
from core.config import CheckedConfig, _field_types, _members
from crystals.models import DiffCSPConfig, SymmCDConfig
from envs.experts import ExpertConfig
from equivariant.cspnet import CSPNetConfig
from pde.networks import DeepONetConfig, PINNConfig
from pde.solver import PINNSolverConfig
from runner.registry import ALGOS
from samplers.canonical import CanonicalConfig
from samplers.idem import IDEMConfig

CONFIGS = [DQSConfig, GoalConfig, WGCSLConfig, ReverseModelConfig, StitchingConfig, ExpertConfig, CSPNetConfig,
           DeepONetConfig, PINNConfig, PINNSolverConfig, CanonicalConfig, IDEMConfig, DiffCSPConfig,
           SymmCDConfig, CausalLearnerConfig, ILCMConfig, Phase]  # fmt: skip


def cases() -> list[tuple[type, str, Any]]:
    """(config, field, a bad value) for every Literal field (a value outside its choices) and every float field
    (infinity and NaN)."""
    found = []
    for config in CONFIGS:
        for name, annotation in _field_types(config).items():
            members = _members(annotation)
            if any(typing.get_origin(member) is Literal for member in members):
                found.append((config, name, "not-a-choice"))
            if float in members:
                found += [(config, name, math.inf), (config, name, math.nan)]
    return found


def test_every_registered_model_config_is_checked_and_listed_here():
    registered = {getattr(spec.load_class(), "config_class", None) for spec in ALGOS.values()} - {None}
    assert registered <= set(CONFIGS)
    assert all(issubclass(config, CheckedConfig) and dataclasses.is_dataclass(config) for config in CONFIGS)
    assert len(cases()) > 60  # the table resolves (a broken annotation would silently drop fields)


@pytest.mark.parametrize(("config", "name", "value"), cases(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_a_bad_value_of_any_field_is_refused_naming_it(config: type, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        config(**{name: value})


def test_good_values_pass():
    assert IDEMConfig(network="egnn", learning_rate=1e-2).network == "egnn"
    assert DQSConfig(temperature="auto_0.1", critic_learning_rate=None).critic_learning_rate is None
