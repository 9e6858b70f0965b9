"""Does symmetry buy sample efficiency? SAC on ParticleReach (N = 3) with three networks, same steps and seeds.

Variants (`agents.equivariant`, EGNN sizes from the profile):

* ``mlp``: SB3's ``MlpPolicy`` on the flat observation (no symmetry);
* ``egnn_features``: ``MlpPolicy`` on `EGNNExtractor` features (translation- and target-permutation-invariant inputs
  that make rotations and particle permutations easy to learn, not built in);
* ``equivariant``: `EquivariantSACPolicy` (exactly E(2)- and permutation-equivariant actor, invariant critics).

``--algos sac dqs`` adds DQS with the two variants it accepts (its networks take features extractors, not the
equivariant policy). Every run evaluates the deterministic policy every ``eval_freq`` steps (mean return, and success
rate = fraction of evaluation episodes whose last step covers every target) and writes
``<work_dir>/<profile>/records/<algo>__<variant>__seed<k>.json`` when it finishes: the runs are trials of the sweep
engine (`benchmarks.common.BenchmarkGrid`; ``--max-concurrent`` at a time, or on a Ray cluster with ``--address``), so
an interrupted benchmark resumes where it stopped.
``benchmarks/results/<name>.json`` is rebuilt from every record of the profile after each run.

Sample efficiency of a variant against the ``mlp`` variant of the same algorithm, on seed-averaged return curves
smoothed by a trailing mean over ``SMOOTHING`` evaluations (one evaluation of 10 episodes is noisy; the first smoothed
value is at the ``SMOOTHING``-th evaluation):

* ``mlp_end_return``: the MLP's smoothed return at the end of the budget (mean of its last ``SMOOTHING`` evaluations);
* ``steps_to_mlp_end``: the first evaluation step at which the variant's smoothed return reaches ``mlp_end_return``
  (None if it never does within the budget);
* ``sample_efficiency_ratio`` = budget / ``steps_to_mlp_end``: how many times fewer environment steps the variant needs
  to match what the MLP reaches with the whole budget (> 1: more sample-efficient, 1: only at the end; None: never);
* ``ratio_cap``: the ratio of a crossing at the first window of evaluations all after ``learning_starts``; a ratio at
  the cap means "as early as the protocol can tell", and the end gaps then carry the comparison;
* ``end_return_gap`` = variant's smoothed end return − ``mlp_end_return``, and ``end_success_gap`` the same for the
  success rate (returns are negative costs, so a ratio of returns would read backwards).

    python -m benchmarks.equivariant                                   # cpu profile (~85-100 min on one core)
    python -m benchmarks.equivariant --variants mlp egnn_features &    # two workers sharing the cpu profile
    python -m benchmarks.equivariant --variants equivariant
    python -m benchmarks.equivariant --profile gpu --device cuda       # 200k steps, unchanged code
    python -m benchmarks.equivariant --profile smoke --seeds 0        # seconds: checks that the script runs
    python -m benchmarks.equivariant --algos dqs --force               # re-run DQS's rows (its runs only)

EGNN forward+backward throughput (`benchmarks.egnn_throughput`) and the prox throughput keep their own results
files and report sections.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import tyro
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from agents.equivariant import EGNNExtractor, EquivariantSACPolicy
from benchmarks.common import BenchmarkGrid, Profile, ResultsArgs, mean_and_std, recorded_args, run_grid
from benchmarks.render import Curve, Panel, Result, Section, figure, machine, mean_std, number
from core.io import atomic_save
from envs.registry import make_env
from equivariant.scene import EGNNConfig, SetLayout
from runner.hyperparams import hyperparams_for
from runner.registry import get_algo
from runner.sweep import Resources, Trial

ENV_ID = "ParticleReach-v0"
N_PARTICLES = 3
LAYOUT = SetLayout((N_PARTICLES, N_PARTICLES))
AlgoName = Literal["sac", "dqs"]
VariantName = Literal["mlp", "egnn_features", "equivariant"]
VARIANTS: tuple[str, ...] = get_args(VariantName)
BASELINE = "mlp"  # the variant every other one is compared with
SMOOTHING = 3  # evaluations in the trailing mean of the sample-efficiency measures
EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded with seed + this


@dataclass(frozen=True)
class EquivariantProfile(Profile):
    """Budget and sizes of every run of a profile."""

    steps: int  # environment steps per run (one gradient step each after learning_starts)
    eval_freq: int  # environment steps between evaluations (the last one is at the end of the budget)
    eval_episodes: int  # deterministic episodes per evaluation
    learning_starts: int  # random-action steps before the first update
    batch_size: int  # replay minibatch per gradient step
    egnn: EGNNConfig  # EGNN of the egnn_features and equivariant variants


PROFILES: dict[str, EquivariantProfile] = {
    "smoke": EquivariantProfile(
        150, 50, 2, 100, 16, EGNNConfig(hidden_dim=8, n_layers=1), rationale="seconds per run: checks that the benchmark runs"
    ),
    "cpu": EquivariantProfile(
        5_000,
        500,
        10,
        1_000,
        256,
        EGNNConfig(),
        rationale="5k steps (100 episodes) per run, so that sac x 3 variants and dqs x 2 variants, 3 seeds each, fit in about "
        "an hour and a half on two loaded cores: measured ~12 env steps/s for SAC and DQS on EGNN features at width "
        "32 and ~22 for DQS's MLP, 1 thread, three processes on two cores",
    ),
    "gpu": EquivariantProfile(
        200_000, 5_000, 20, 1_000, 256, EGNNConfig(), rationale="a long comparison (4000 episodes per run) on an accelerator"
    ),
}


@dataclass
class EquivariantBenchArgs(Resources, ResultsArgs):
    algos: list[AlgoName] = field(default_factory=lambda: ["sac"])
    """Algorithms; DQS runs the mlp and egnn_features variants only."""
    variants: list[VariantName] = field(default_factory=lambda: list(VARIANTS))
    """Networks to train (this process's share of the work)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds, one run per (algo, variant, seed)."""
    profile: Literal["smoke", "cpu", "gpu"] = "cpu"
    """Budget and sizes (see PROFILES)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/equivariant")
    """Records under <work_dir>/<profile>/records/, models and evaluations under <work_dir>/<profile>/runs/."""
    name: str | None = None
    """Results file <results-dir>/<name>.json; default: equivariant (cpu profile), equivariant_<profile>."""
    force: bool = False
    """Re-run the selected (algo, variant, seed) runs even if their records exist (e.g. after a fix to the algorithm);
    an interrupted forced run resumes without the flag."""


class RunKey(NamedTuple):
    """One training run of the benchmark."""

    algo: str
    variant: str
    seed: int

    @property
    def stem(self) -> str:
        return f"{self.algo}__{self.variant}__seed{self.seed}"


def supported(algo: str, variant: str) -> bool:
    """Whether ``algo`` can train ``variant`` (the equivariant policy is a SAC policy)."""
    return variant != "equivariant" or algo == "sac"


def policy_and_kwargs(variant: str, egnn: EGNNConfig) -> tuple[str | type, dict[str, Any]]:
    """The policy argument and policy_kwargs of a variant."""
    if variant == "mlp":
        return "MlpPolicy", {}
    if variant == "egnn_features":
        return "MlpPolicy", {
            "features_extractor_class": EGNNExtractor,
            "features_extractor_kwargs": {"layout": LAYOUT, "egnn": egnn},
        }
    if variant == "equivariant":
        return EquivariantSACPolicy, {"layout": LAYOUT, "egnn": egnn}
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


def train_run(key: RunKey, profile: EquivariantProfile, run_dir: Path, device: str = "auto") -> dict[str, Any]:
    """Train one (algo, variant, seed) with periodic evaluation; returns its record (curves, final values, timing)."""
    if not supported(key.algo, key.variant):
        raise ValueError(f"{key.algo} cannot train the {key.variant} variant: it is a SAC policy (use --algos sac)")
    policy, policy_kwargs = policy_and_kwargs(key.variant, profile.egnn)
    hyperparams = hyperparams_for(key.algo, ENV_ID)
    kwargs = dict(hyperparams.kwargs)
    kwargs |= {"learning_starts": profile.learning_starts, "batch_size": profile.batch_size}
    env = make_vec_env(make_env, n_envs=1, seed=key.seed, env_kwargs={"name": ENV_ID, "n_particles": N_PARTICLES})
    eval_env = make_vec_env(
        make_env, n_envs=1, seed=key.seed + EVAL_SEED_OFFSET, env_kwargs={"name": ENV_ID, "n_particles": N_PARTICLES}
    )
    algo_class = get_algo(key.algo).load_class()
    model = algo_class(policy, env, seed=key.seed, device=device, policy_kwargs=policy_kwargs, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    evaluation = EvalCallback(
        eval_env, n_eval_episodes=profile.eval_episodes, eval_freq=profile.eval_freq, log_path=str(run_dir), verbose=0
    )
    start = time.perf_counter()
    model.learn(profile.steps, callback=evaluation)
    wall_time = time.perf_counter() - start
    atomic_save(model, run_dir / "model.zip")
    returns = [float(np.mean(episodes)) for episodes in evaluation.evaluations_results]
    successes = [float(np.mean(episodes)) for episodes in evaluation.evaluations_successes]
    parameters = {name: sum(p.numel() for p in getattr(model.policy, name).parameters()) for name in ("actor", "critic")}
    return {
        **key._asdict(),
        "steps": profile.steps,
        "run_dir": str(run_dir),
        "eval_timesteps": list(evaluation.evaluations_timesteps),
        "eval_returns": returns,
        "eval_success_rates": successes,
        "final_return": returns[-1],
        "final_success_rate": successes[-1],
        "train_wall_time_s": wall_time,
        "steps_per_s": profile.steps / wall_time,  # evaluations included
        "parameters": parameters,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per algo and variant: seed-averaged curves, final return and success rate (mean ± std over seeds), speed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in sorted(runs, key=lambda r: (r["algo"], VARIANTS.index(r["variant"]), r["seed"])):
        groups.setdefault((run["algo"], run["variant"]), []).append(run)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (algo, variant), chosen in groups.items():
        length = min(len(r["eval_timesteps"]) for r in chosen)
        returns = np.array([r["eval_returns"][:length] for r in chosen])
        successes = np.array([r["eval_success_rates"][:length] for r in chosen])
        summary.setdefault(algo, {})[variant] = {
            "seeds": [r["seed"] for r in chosen],
            "eval_timesteps": chosen[0]["eval_timesteps"][:length],
            "return_mean": returns.mean(0).tolist(),
            "return_std": returns.std(0).tolist(),
            "success_mean": successes.mean(0).tolist(),
            "success_std": successes.std(0).tolist(),
            "final_return": mean_and_std([r["final_return"] for r in chosen]),
            "final_success_rate": mean_and_std([r["final_success_rate"] for r in chosen]),
            "steps_per_s": mean_and_std([r["steps_per_s"] for r in chosen]),
        }
    return summary


def trailing_mean(values: list[float], window: int) -> np.ndarray:
    """Means of every ``window`` consecutive values (full windows only; the whole list if it is shorter)."""
    window = min(window, len(values))
    return np.convolve(np.asarray(values, dtype=np.float64), np.full(window, 1.0 / window), mode="valid")


def sample_efficiency(
    summary: dict[str, dict[str, dict[str, Any]]], learning_starts: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per algo and non-baseline variant: the smoothed sample-efficiency measures of the module docstring (a smoothed
    value belongs to the last evaluation of its window). Only variants evaluated at the MLP's steps are compared.
    ``ratio_cap``: the ratio of a crossing at the first window made only of evaluations after ``learning_starts``
    (earlier windows average in random-policy evaluations), the largest ratio the protocol can realistically show."""
    comparisons: dict[str, dict[str, dict[str, Any]]] = {}
    for algo, variants in summary.items():
        baseline = variants.get(BASELINE)
        if baseline is None:
            continue
        steps = baseline["eval_timesteps"]
        learned = [i for i in range(SMOOTHING - 1, len(steps)) if steps[i - SMOOTHING + 1] > learning_starts]
        ratio_cap = steps[-1] / steps[learned[0]] if learned else None
        target = trailing_mean(baseline["return_mean"], SMOOTHING)[-1]
        baseline_success = trailing_mean(baseline["success_mean"], SMOOTHING)[-1]
        for variant, entry in variants.items():
            if variant == BASELINE or entry["eval_timesteps"] != steps:
                continue
            smoothed = trailing_mean(entry["return_mean"], SMOOTHING)
            reached = np.flatnonzero(smoothed >= target)
            first = int(steps[len(steps) - len(smoothed) + reached[0]]) if reached.size else None
            comparisons.setdefault(algo, {})[variant] = {
                "budget": steps[-1],
                "mlp_end_return": float(target),
                "steps_to_mlp_end": first,
                "sample_efficiency_ratio": steps[-1] / first if first else None,
                "ratio_cap": ratio_cap,
                "end_return_gap": float(smoothed[-1] - target),
                "end_success_gap": float(trailing_mean(entry["success_mean"], SMOOTHING)[-1] - baseline_success),
            }
    return comparisons


def results_name(args: EquivariantBenchArgs) -> str:
    return args.name or ("equivariant" if args.profile == "cpu" else f"equivariant_{args.profile}")


def results_payload(args: EquivariantBenchArgs, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The results file's payload from every record of the profile."""
    summary = summarize(runs)
    profile = PROFILES[args.profile]
    return {
        "env_id": ENV_ID,
        "n_particles": N_PARTICLES,
        "config": recorded_args(args),
        "runs": runs,
        "summary": summary,
        "sample_efficiency": sample_efficiency(summary, profile.learning_starts),
    }


def run_trial(config: dict[str, Any]) -> dict[str, Any]:
    """One trial of the grid: `train_run` on its key, in its run folder."""
    key = RunKey(**config["key"])
    return train_run(key, config["profile"], Path(config["run_dir"]), config["device"]) | {"profile": config["name"]}


def print_summary(payload: dict[str, Any]) -> None:
    for algo, variants in payload["summary"].items():
        for variant, s in variants.items():
            ret, success, speed = s["final_return"], s["final_success_rate"], s["steps_per_s"]
            print(f"{algo:<5}{variant:<15} final return {ret['mean']:8.2f} ± {ret['std']:6.2f}   success "
                  f"{success['mean']:.2f} ± {success['std']:.2f}   {speed['mean']:6.1f} steps/s   "
                  f"({len(s['seeds'])} seeds)")  # fmt: skip
    for algo, variants in payload["sample_efficiency"].items():
        for variant, c in variants.items():
            ratio = "not reached" if c["sample_efficiency_ratio"] is None else f"{c['sample_efficiency_ratio']:.2f}"
            print(f"{algo} {variant} vs mlp: steps to the MLP's end return {c['mlp_end_return']:.2f}: "
                  f"{c['steps_to_mlp_end']} (ratio {ratio}), end return gap {c['end_return_gap']:+.2f}")  # fmt: skip


def main(args: EquivariantBenchArgs) -> None:
    profile = PROFILES[args.profile]
    root = (args.work_dir / args.profile).resolve()
    keys = [RunKey(a, v, s) for s in args.seeds for a in args.algos for v in args.variants if supported(a, v)]
    skipped = sorted({f"{a}/{v}" for a in args.algos for v in args.variants if not supported(a, v)})
    if skipped:
        print(f"skipping {', '.join(skipped)}: the equivariant variant is a SAC policy")
    trials = [Trial(key.stem, {"key": key._asdict(), "profile": profile, "name": args.profile, "device": args.device,
                               "run_dir": str(root / "runs" / key.stem)})
              for key in keys]  # fmt: skip
    grid = BenchmarkGrid(
        name=results_name(args), out=args, profile=args.profile, settings=asdict(profile), sweep_dir=root, trials=trials,
        run=run_trial, record_name=lambda r: RunKey(r["algo"], r["variant"], r["seed"]).stem,
        results=lambda runs: results_payload(args, runs),
    )  # fmt: skip
    runs = run_grid(grid, args, rerun=(lambda record: True) if args.force else None)
    print_summary(results_payload(args, runs))
    print(f"wrote {args.results_path(results_name(args))}")


LABELS = {"mlp": "MLP", "egnn_features": "MLP on EGNN features", "equivariant": "equivariant policy"}
TEXT = """\
## Symmetry and sample efficiency on ParticleReach (N = {n_particles}), {profile} profile

`python -m benchmarks.equivariant --profile {profile} --algos {algos}` (resumable; the tables are rebuilt from every \
finished run).

Machine: {machine}. {budget[steps]:,} environment steps per run ({budget[learning_starts]:,} random first), batch \
{budget[batch_size]}; every {budget[eval_freq]:,} steps {budget[eval_episodes]} deterministic evaluation episodes: mean \
return and success rate (all targets covered at the last step). EGNN of both EGNN networks: width \
{budget[egnn][hidden_dim]}, depth {budget[egnn][n_layers]}. Final values are the last evaluation, mean ± std over \
seeds; steps/s include the evaluations. Budget: {budget[rationale]}.

| algo | network | seeds | final return | final success rate | env steps/s | parameters (actor / critic) |
|---|---|---|---|---|---|---|"""
ROW = "| {algo} | {network} | {seeds} | {final_return} | {final_success} | {speed} | {actor:,} / {critic:,} |"
EFFICIENCY = """
Sample efficiency against the MLP of the same algorithm (`benchmarks/equivariant.py`), on seed-averaged returns \
averaged over 3 consecutive evaluations: the steps a network needs to reach the MLP's return at the end of the budget, \
the ratio budget / those steps (> 1: fewer steps than the MLP; - : not reached), the ratio's cap (a crossing at the \
first window of evaluations all after the random steps: a ratio at its cap means as early as this protocol can tell, \
and the end gaps carry the comparison), and the gap of the end return and success rate (network minus MLP).

| algo | network | MLP end return | steps to reach it | sample-efficiency ratio | ratio cap | end return gap | end \
success gap |
|---|---|---|---|---|---|---|---|"""
EFFICIENCY_ROW = (
    "| {algo} | {network} | {mlp_end_return:.2f} | {steps} | {ratio} | {cap} | {end_return_gap:+.2f} | "
    "{end_success_gap:+.2f} |"
)


def render(result: Result, figures: Path) -> str:
    """Final return, success rate, speed and size per algorithm and network, the sample-efficiency comparison with
    the MLP, and the learning curves."""
    lines = [TEXT.format(n_particles=result["n_particles"], profile=result["profile"], machine=machine(result),
                         algos=" ".join(result["config"]["algos"]), budget=result["profile_config"])]  # fmt: skip
    parameters = {(r["algo"], r["variant"]): r["parameters"] for r in result["runs"]}
    for algo, variants in result["summary"].items():
        for variant, s in variants.items():
            lines.append(ROW.format(algo=algo, network=LABELS.get(variant, variant), seeds=len(s["seeds"]),
                                    final_return=mean_std(s["final_return"]),
                                    final_success=mean_std(s["final_success_rate"]), speed=mean_std(s["steps_per_s"], 1),
                                    **parameters[(algo, variant)]))  # fmt: skip
    if any(result["sample_efficiency"].values()):
        lines.append(EFFICIENCY)
        for algo, variants in result["sample_efficiency"].items():
            for variant, c in variants.items():
                steps = "-" if c["steps_to_mlp_end"] is None else f"{c['steps_to_mlp_end']:,}"
                lines.append(EFFICIENCY_ROW.format(**c, algo=algo, network=LABELS.get(variant, variant), steps=steps,
                                                   ratio=number(c["sample_efficiency_ratio"]),
                                                   cap=number(c.get("ratio_cap"))))  # fmt: skip
    return "\n".join([*lines, "", learning_curves(result, figures)])


def learning_curves(result: Result, figures: Path) -> str:
    """Mean ± std over seeds of the evaluation return and success rate of every algorithm and network."""
    returns, successes = [], []
    for color, (algo, variant, s) in enumerate(
        (algo, variant, s) for algo, variants in result["summary"].items() for variant, s in variants.items()
    ):
        label = f"{algo}, {LABELS.get(variant, variant)} ({len(s['seeds'])} seeds)"
        for curves, key in ((returns, "return"), (successes, "success")):
            curves.append(Curve(label, s["eval_timesteps"], s[f"{key}_mean"], f"C{color}", spread=s[f"{key}_std"]))
    panels = [Panel(returns, "environment steps", "evaluation return", legend=7),
              Panel(successes, "environment steps", "success rate", legend=None)]  # fmt: skip
    return figure(panels, figures, f"equivariant_curves_{result['profile']}.png", "ParticleReach learning curves")


SECTION = Section(("equivariant", "equivariant_gpu"), render)


if __name__ == "__main__":
    main(tyro.cli(EquivariantBenchArgs))
