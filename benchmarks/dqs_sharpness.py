"""How sharp is a trained DQS policy next to the Boltzmann policy of its own critic, exp(Q(s, ·)/T) on the action box?
(SAC beside it, against its own critic and entropy coefficient α.)

DQS learns its score from K self-normalised proposals per buffer action (docs/dqs.md §4.3, §4.5), a biased estimate
of the noised Boltzmann score at small K; this measures what that does to the policy a trained agent acts with. For
states visited by the agent's deterministic policy, per state:

* the Boltzmann policy of the agent's critic, min_j Q_j, at the agent's temperature T, by self-normalised importance
  sampling from ``uniform_samples`` uniform actions on the box: its entropy H_B = log Z − E_B[Q]/T (Z = |box| ·
  mean exp(Q/T)), E_B[Q], and the effective sample size of the weights;
* the agent's stochastic policy (DQS: the reverse SDE that acts; SAC: its squashed Gaussian): E_π[Q] over
  ``policy_samples`` samples, and its entropy H_π (DQS: of its deterministic sampler's law, the PF-ODE log-likelihood
  of `DiffusionActor.entropy`; SAC: −E log π);
* the greedy reference: the largest Q among the uniform actions and the Q of the deterministic action.

and, for DQS, how far its two estimators are from what they estimate: the soft backup's V_soft from M uniform
(Latin-hypercube) actions against the exact T·log ∫_box exp(Q/T), in units of T (biased low by Jensen; a bias that
varies between states is an error in the critic's targets), and what its score targets alone would sample: the same
reverse SDE (the policy's schedule and steps) with the network replaced by the regression target it is trained on,
the self-normalised estimate from K box-truncated proposals averaged over ``max(1, 256 // K)`` independent draws
(≈ its expectation, the function an exact network fit would learn), for each K of ``target_proposals``:
E_B[Q] − E[Q] of those samples in units of T. A gap that shrinks
with K locates the policy's breadth in the estimator rather than in the network.

Gaps are reported in units of T, (E_B[Q] − E_π[Q]) / T, and in nats, H_π − H_B: a policy as sharp as its target scores
about 0 on both. Results go to ``benchmarks/results/<name>.json``.

    python -m benchmarks.dqs_sharpness --models runs/benchmarks/dqs_mujoco/cpu/{dqs,sac}/*/model.zip
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import tyro
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.dqs import DQS
from agents.dqs.proposal import backup_actions, box_log_partition, importance_log_partition
from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.render import Result, Section, machine, named
from envs.registry import make_env
from samplers.estimators import softmax_score_estimate
from samplers.integrators import euler_maruyama
from samplers.schedules import NoiseSchedule


@dataclass
class SharpnessArgs(ResultsArgs):
    models: list[Path]
    """Trained DQS or SAC model files (model.zip of a train.py run folder: its config.yaml names the algorithm and the
    environment)."""
    states: int = 32
    """States per model, every ``stride``-th state of deterministic episodes."""
    stride: int = 25
    """Environment steps between measured states."""
    uniform_samples: int = 2**18
    """Uniform actions per state for the Boltzmann reference."""
    policy_samples: int = 256
    """Policy samples per state (stochastic actions and the entropy estimate)."""
    target_proposals: list[int] = field(default_factory=lambda: [16, 256, 4096])
    """DQS: proposal counts K of the target-driven sampler (empty: skip it)."""
    target_states: int = 8
    """DQS: the first this many states get the target-driven sampler (it costs K critic rows per sample and step)."""
    target_samples: int = 32
    """DQS: target-driven samples per state."""
    seed: int = 0
    """Seed of the episodes and the samples."""
    name: str = "dqs_sharpness"
    """Results file: <results-dir>/<name>.json."""


def run_of(model_path: Path) -> tuple[str, str, dict[str, Any]]:
    """The environment id, algorithm and ``--hyperparams`` overrides of a run folder's model, from its config.yaml."""
    config_path = model_path.parent / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    if not isinstance(config, dict) or "env_id" not in config or config.get("algo") not in LOADERS:
        raise SystemExit(f"{config_path} names no env_id or no algorithm of {sorted(LOADERS)}: pass the model.zip "
                         "of a DQS or SAC train.py run")  # fmt: skip
    return config["env_id"], config["algo"], dict(config.get("args", {}).get("hyperparams") or {})


def visited_states(model: BaseAlgorithm, env_id: str, count: int, stride: int, seed: int) -> np.ndarray:
    """``count`` observations, every ``stride``-th step of the deterministic policy's episodes."""
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    states, step = [], 0
    while len(states) < count:
        if step % stride == 0:
            states.append(obs)
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        step += 1
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(states)


class PolicyView(NamedTuple):
    """What the measurement needs of an agent at one state: its temperature, its critic's pessimistic Q of actions in
    [-1, 1] (n, |A|) -> (n,), n samples of its stochastic policy, an entropy estimate from n samples, and the Q of its
    deterministic action."""

    temperature: float
    q: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], torch.Tensor]
    entropy: Callable[[int], float]
    deterministic_q: float


@torch.no_grad()
def dqs_view(model: DQS, obs: np.ndarray) -> PolicyView:
    """DQS: T, min_j Q_j, the reverse SDE that acts, the PF-ODE entropy (`DiffusionActor.entropy`)."""
    policy = model.policy
    observation, _ = policy.obs_to_tensor(obs)
    critic_features = policy.critic.features(observation)
    actor_features = policy.actor_target.features(observation)

    def q(actions: torch.Tensor) -> torch.Tensor:
        return policy.critic.min_q_grouped(critic_features, actions.unsqueeze(0))[0]

    def entropy(n: int) -> float:
        with torch.enable_grad():
            return float(policy.actor_target.entropy(actor_features.expand(n, -1)))

    deterministic = torch.as_tensor(policy.scale_action(model.predict(obs, deterministic=True)[0]), dtype=torch.float32)
    return PolicyView(float(policy.temperature), q, lambda n: policy.actor_target.sample_actions(actor_features.expand(n, -1)),
                      entropy, float(q(deterministic[None])))  # fmt: skip


@torch.no_grad()
def sac_view(model: SAC, obs: np.ndarray) -> PolicyView:
    """SAC: the entropy coefficient α, min_j Q_j, the squashed Gaussian (entropy −E log π, tanh Jacobian included)."""
    policy = model.policy
    observation, _ = policy.obs_to_tensor(obs)
    temperature = float(model.log_ent_coef.exp()) if model.log_ent_coef is not None else float(model.ent_coef_tensor)

    def q(actions: torch.Tensor) -> torch.Tensor:
        rows = observation.expand(len(actions), -1)
        return torch.minimum(*policy.critic(rows, actions)[:2]).squeeze(1)

    def sample(n: int) -> torch.Tensor:
        return policy.actor.action_log_prob(observation.expand(n, -1))[0]

    def entropy(n: int) -> float:
        return float(-policy.actor.action_log_prob(observation.expand(n, -1))[1].mean())

    deterministic = torch.as_tensor(policy.scale_action(model.predict(obs, deterministic=True)[0]), dtype=torch.float32)
    return PolicyView(temperature, q, sample, entropy, float(q(deterministic[None])))


@torch.no_grad()
def measure_state(view: PolicyView, dim: int, args: SharpnessArgs, generator: torch.Generator) -> dict[str, float]:
    """The Boltzmann reference and the policy's statistics at one state (see the module docstring)."""
    temperature = view.temperature
    uniform = torch.rand(args.uniform_samples, dim, generator=generator) * 2 - 1
    q_uniform = torch.cat([view.q(chunk) for chunk in uniform.split(8192)])
    log_weights = q_uniform / temperature
    weights = torch.softmax(log_weights, 0)
    log_z = float(box_log_partition(log_weights, dim))
    boltzmann_q = float(weights @ q_uniform)
    q_policy = float(view.q(view.sample(args.policy_samples)).mean())
    return {
        "temperature": temperature,
        "boltzmann_entropy": log_z - boltzmann_q / temperature,
        "policy_entropy": view.entropy(args.policy_samples),
        "boltzmann_mean_q": boltzmann_q,
        "policy_mean_q": q_policy,
        "q_gap_in_t": (boltzmann_q - q_policy) / temperature,
        "uniform_max_q": float(q_uniform.max()),
        "deterministic_q": view.deterministic_q,
        "q_spread_over_box": float(q_uniform.std()),
        "effective_sample_size": float(1.0 / weights.square().sum()),
    }


#: Learned score-target proposals of a model: (observation rows, count) -> `softmax_score_estimate` keywords.
LearnedProposals = Callable[[int, int], dict[str, Any]]
#: A soft value's actions: repeats -> (actions (repeats, M, |A|), log proposal densities (repeats, M)).
BackupDraw = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def target_sampler_mean_q(view: PolicyView, dim: int, schedule: NoiseSchedule, steps: int, denoise_last_step: bool,
                          proposals: int, samples: int, learned_fraction: float = 0.0,
                          learned: LearnedProposals | None = None) -> float:  # fmt: skip
    """Mean Q of ``samples`` draws of the reverse SDE (``steps`` steps of ``schedule``) driven by DQS's score-regression
    target for exp(Q/T) with ``proposals`` proposals, averaged over max(1, 256 // proposals) draws per evaluation, in
    place of the score network: box-truncated kernel draws, of which a ``learned_fraction`` share is replaced by
    draws of the model's learned proposal (``learned``)."""
    repeats = max(1, 256 // proposals)
    n_learned = round(learned_fraction * proposals) if learned is not None else 0

    def energy(actions: torch.Tensor, context: None) -> torch.Tensor:
        return -view.q(actions) / view.temperature

    def score(x: torch.Tensor, t: torch.Tensor, context: None) -> torch.Tensor:
        rows, times = x.repeat(repeats, 1), t.repeat(repeats)
        extra = learned(len(rows), n_learned) if n_learned else {}
        target = softmax_score_estimate(energy, rows, times, schedule, proposals - n_learned, bounds=(-1.0, 1.0), **extra)
        return target.view(repeats, len(x), -1).mean(0)

    prior = schedule.sample_prior(samples, dim)
    actions = euler_maruyama(score, prior, schedule, steps, denoise_last_step=denoise_last_step)
    return float(view.q(actions.clamp(-1.0, 1.0)).mean())


@torch.no_grad()
def soft_value_bias_in_t(view: PolicyView, dim: int, m: int, log_partition: float, draw: BackupDraw | None = None,
                         repeats: int = 256) -> tuple[float, float]:  # fmt: skip
    """In units of T: the mean of V_exact − V_M and the std of V_M, where V_exact = T·log ∫_box exp(Q/T) is the exact
    soft value (``log_partition`` = log ∫, from the uniform reference) and V_M DQS's soft-backup estimate from M
    actions (``draw``: the model's own; default: a Latin hypercube), over ``repeats`` independent sets."""
    if draw is None:
        actions, log_proposal = backup_actions(repeats, m, dim, torch.device("cpu"))
    else:
        actions, log_proposal = draw(repeats)
    q = view.q(actions.reshape(-1, dim)).view(repeats, m)
    estimates = importance_log_partition(q / view.temperature, log_proposal)
    return log_partition - float(estimates.mean()), float(estimates.std())


def dqs_estimates(model: DQS, obs: np.ndarray, view: PolicyView, entry: dict[str, float], dim: int,
                  args: SharpnessArgs, with_sampler: bool) -> dict[str, float]:  # fmt: skip
    """At one state, how far DQS's two estimators are from the exact quantities they estimate: the soft backup's
    V_soft from its M = ``n_backup_samples`` actions (and, for a model with the learned proposal, from M uniform
    actions beside it), and (``with_sampler``) the score target, through the target-driven sampler for each K of
    ``target_proposals``."""
    policy, config = model.policy, model.config
    observation, _ = policy.obs_to_tensor(obs)
    log_partition = entry["boltzmann_entropy"] + entry["boltzmann_mean_q"] / entry["temperature"]
    m = config.n_backup_samples

    def own_draw(repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
        return model.backup_actions(observation.expand(repeats, -1), repeats)

    bias, std = soft_value_bias_in_t(view, dim, m, log_partition, own_draw)
    estimates = {"soft_value_bias_in_t": bias, "soft_value_std_in_t": std}
    if config.learned_backup:
        bias, std = soft_value_bias_in_t(view, dim, m, log_partition)
        estimates |= {"uniform_soft_value_bias_in_t": bias, "uniform_soft_value_std_in_t": std}

    def learned(rows: int, k: int) -> dict[str, Any]:
        return model.score_proposals(observation.expand(rows, -1), k)

    fraction = config.score_proposal_fraction if model.proposal is not None else 0.0
    actor = policy.actor_target
    for k in args.target_proposals if with_sampler else []:
        q = target_sampler_mean_q(view, dim, actor.schedule, actor.sampler_steps, actor.denoise_last_step, k,
                                  args.target_samples, fraction, learned)  # fmt: skip
        estimates[f"target_sampler_q_gap_in_t_k{k}"] = (entry["boltzmann_mean_q"] - q) / entry["temperature"]
    return estimates


def measure_model(path: Path, args: SharpnessArgs) -> dict[str, Any]:
    """Per-state statistics of one model and their means over states."""
    env_id, algo, overrides = run_of(path)
    model = LOADERS[algo][0].load(path, device="cpu")
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    states = visited_states(model, env_id, args.states, args.stride, args.seed)
    dim = model.action_space.shape[0]
    views = [LOADERS[algo][1](model, obs) for obs in states]
    per_state = [measure_state(view, dim, args, generator) for view in views]
    if algo == "dqs":
        for index, (obs, entry, view) in enumerate(zip(states, per_state, views, strict=True)):
            entry.update(dqs_estimates(model, obs, view, entry, dim, args, with_sampler=index < args.target_states))
    # The target-sampler keys exist on the first `target_states` states only: their means are over those.
    means = {key: float(np.mean([entry[key] for entry in per_state if key in entry])) for key in per_state[0]}
    return {"model": str(path), "algo": algo, "env_id": env_id, "overrides": overrides,
            "num_timesteps": model.num_timesteps, "mean": means, "per_state": per_state}  # fmt: skip


LOADERS: dict[str, tuple[type, Callable[[Any, np.ndarray], PolicyView]]] = {"dqs": (DQS, dqs_view), "sac": (SAC, sac_view)}


def main(args: SharpnessArgs) -> None:
    missing = [str(path) for path in args.models if not path.is_file()]
    if missing:
        raise SystemExit(f"no model file {', '.join(missing)}: pass model.zip files of DQS or SAC runs")
    counts = [
        ("--states", args.states),
        ("--stride", args.stride),
        ("--uniform-samples", args.uniform_samples),
        ("--policy-samples", args.policy_samples),
        ("--target-samples", args.target_samples),
    ]
    counts += [("--target-proposals", k) for k in args.target_proposals]
    bad = [f"{flag} {value}" for flag, value in counts if value < 1]
    if args.target_states < 0:
        bad.append(f"--target-states {args.target_states}")
    if bad:
        raise SystemExit(f"{', '.join(bad)}: counts must be positive (--target-states >= 0)")
    source_commit(args.allow_dirty)
    torch.set_num_threads(1)
    results = []
    for path in args.models:
        result = measure_model(path, args)
        results.append(result)
        m = result["mean"]
        print(f"{result['algo']} {result['env_id']} ({path.parent.name}): T {m['temperature']:.4f}, entropy policy "
              f"{m['policy_entropy']:.2f} vs Boltzmann {m['boltzmann_entropy']:.2f} nats, E[Q] policy "
              f"{m['policy_mean_q']:.3f} vs Boltzmann {m['boltzmann_mean_q']:.3f} ({m['q_gap_in_t']:.1f} T), "
              f"max uniform {m['uniform_max_q']:.3f}, deterministic {m['deterministic_q']:.3f}, "
              f"ESS {m['effective_sample_size']:.0f}", flush=True)  # fmt: skip
        for prefix, label in (("", "its proposal"), ("uniform_", "uniform actions")):
            if f"{prefix}soft_value_bias_in_t" in m:
                biases = [entry[f"{prefix}soft_value_bias_in_t"] for entry in result["per_state"]]
                one = m[f"{prefix}soft_value_std_in_t"]
                print(f"  soft backup from {label}, V_exact - V_M in T: mean {np.mean(biases):.2f}, std over states "
                      f"{np.std(biases):.2f}, std of one estimate {one:.2f}", flush=True)  # fmt: skip
        targets = {key.rsplit("_k", 1)[1]: round(value, 1) for key, value in m.items() if key.startswith("target_")}
        if targets:
            print(f"  target-driven sampler, E_B[Q] - E[Q] in T by proposals K (first {args.target_states} states): "
                  f"{targets}", flush=True)  # fmt: skip
    settings = {key: value for key, value in recorded_args(args).items() if key not in ("models", "name")}
    print(f"wrote {write_results(args.name, {'config': settings, 'models': results}, args)}")


TEXT = """\
## Trained policies against the Boltzmann policy of their own critic{suffix}

`python -m benchmarks.dqs_sharpness --models <run>/model.zip ...{option}` (the final models of the runs named below).

Machine: {machine}. For {config[states]} states visited by each agent's deterministic policy: the Boltzmann policy \
exp(Q/T) of the agent's own pessimistic critic on the action box (DQS: its temperature T; SAC: its entropy coefficient \
α), by self-normalised importance sampling from {config[uniform_samples]:,} uniform actions, against the agent's \
stochastic policy ({config[policy_samples]} samples per state; DQS's entropy is its PF-ODE sampler's). Means over \
states; a policy as sharp as its target has both gaps near 0; the effective sample size (ESS) of the weights says how \
well the Boltzmann reference is resolved.

| algo | env | run | steps | T | entropy, policy | entropy, Boltzmann | excess entropy (nats) | E_B[Q] − E_π[Q] (in T) \
| max uniform Q − deterministic Q (in T) | ESS |
|---|---|---|---|---|---|---|---|---|---|---|"""
ROW = (
    "| {algo} | {env_id} | {run} | {num_timesteps:,} | {m[temperature]:.3g} | {m[policy_entropy]:.2f} | "
    "{m[boltzmann_entropy]:.2f} | {excess:.2f} | {m[q_gap_in_t]:.1f} | {greedy_gap:.1f} | {m[effective_sample_size]:.0f} |"
)
ESTIMATORS = """
DQS's two estimators at the same states, in units of T. Soft backup: the exact soft value T·log ∫_box exp(Q/T) minus \
the estimate from the backup's M uniform (Latin-hypercube) actions, mean over states, its spread between states (an \
error in the critic's targets that does not cancel), and the std of one estimate. Score target: E_B[Q] − E[Q] of the \
reverse SDE driven by the self-normalised target from K proposals instead of the network (first \
{config[target_states]} states, {config[target_samples]} samples each); the policy's own gap (first table) is what the \
network learned from K = 16. A model with the learned proposal q_φ (docs/dqs.md §4.16) is measured with its own \
estimators (the soft value from its proposal and uniform actions, half of the K proposals from q_φ) and, on a second \
row, with M uniform actions at the same M.

| env | run | soft-value actions | soft-value bias | between states | one estimate | {samplers} |
|---|---|---|---|---|---|{rules}"""
ESTIMATOR_ROW = "| {env_id} | {run} | {label} | {bias:.2f} | {spread:.2f} | {one:.2f} | {gaps} |"


def render(result: Result, figures: Path) -> str:
    """Entropy and value gaps of each measured policy against its critic's Boltzmann policy, and DQS's soft-value and
    score-target estimators."""
    config = result["config"]
    suffix, option = named(result, "dqs_sharpness")
    lines = [TEXT.format(suffix=suffix, option=option, config=config, machine=machine(result))]
    for model in result["models"]:
        m = model["mean"]
        lines.append(ROW.format(**model, m=m, run=run_label(model), excess=m["policy_entropy"] - m["boltzmann_entropy"],
                                greedy_gap=(m["uniform_max_q"] - m["deterministic_q"]) / m["temperature"]))  # fmt: skip
    dqs_models = [model for model in result["models"] if "soft_value_bias_in_t" in model["mean"]]
    if dqs_models:
        proposals = config["target_proposals"]
        lines.append(ESTIMATORS.format(config=config, rules="---|" * len(proposals),
                                       samplers=" | ".join(f"target sampler K = {k}" for k in proposals)))  # fmt: skip
        for model in dqs_models:
            m = model["mean"]
            gaps = [f"{m[f'target_sampler_q_gap_in_t_k{k}']:.1f}" for k in proposals]
            learned = "uniform_soft_value_bias_in_t" in m
            for prefix, label in [("", "learned + uniform" if learned else "uniform")] + [("uniform_", "uniform")] * learned:
                biases = [entry[f"{prefix}soft_value_bias_in_t"] for entry in model["per_state"]]
                lines.append(ESTIMATOR_ROW.format(env_id=model["env_id"], run=run_label(model), label=label,
                                                  bias=np.mean(biases), spread=np.std(biases),
                                                  one=m[f"{prefix}soft_value_std_in_t"],
                                                  gaps=" | ".join(gaps if prefix == "" else ["—"] * len(gaps))))  # fmt: skip
    return "\n".join(lines)


def run_label(model: dict[str, Any]) -> str:
    """A measured run's seed (from its folder name) and its ``--hyperparams`` overrides."""
    seed = re.search(r"__seed(\d+)__", Path(model["model"]).parent.name)
    overrides = [f"{key}={value}" for key, value in (model.get("overrides") or {}).items()]
    return ", ".join([f"seed {seed.group(1)}" if seed else "?"] + (overrides or ["defaults"]))


SECTION = Section(("dqs_sharpness", "dqs_sharpness_proposal"), render)


if __name__ == "__main__":
    main(tyro.cli(SharpnessArgs))
