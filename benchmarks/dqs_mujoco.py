"""DQS against SB3 SAC on MuJoCo: same seeds, same step budget, same evaluation, plus their throughput ratio.

Every (env, algo, seed) run goes through `train.py`'s experiment with the default hyperparameters of
`agents/hyperparams.py` and leaves a record under ``<work_dir>/<profile>/records/`` as soon as it finishes, so an
interrupted benchmark resumes where it stopped, and several processes can share the work (give each its own
``--envs``/``--seeds``). The results file is rebuilt from all records after each run. The throughput ratio DQS/SAC is
measured per env in one process (interleaved repeats of `benchmarks.throughput.measure`).

    python -m benchmarks.dqs_mujoco                                  # CPU: 100k steps x 3 seeds, HalfCheetah + Hopper
    python -m benchmarks.dqs_mujoco --profile gpu --device cuda      # 1M steps
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro
from scipy.stats import trim_mean

from agents.common.experiment import TrainArgs, train
from benchmarks.common import RESULTS_DIR, restore_missing, write_results
from benchmarks.throughput import acting_cost, measure_interleaved, warmed_up_model
from core.io import atomic_write
from envs import resolve_env_id

Profiles = dict[str, dict[str, int]]
PROFILES: Profiles = {
    "cpu": {"steps": 100_000, "eval_freq": 5_000},
    "gpu": {"steps": 1_000_000, "eval_freq": 10_000},
}


@dataclass
class MujocoArgs:
    envs: list[str] = field(default_factory=lambda: ["HalfCheetah", "Hopper"])
    """Environments."""
    algos: list[str] = field(default_factory=lambda: ["dqs", "sac"])
    """Algorithms; the ratio is first / second."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds, one run per (env, algo, seed)."""
    profile: Literal["cpu", "gpu"] = "cpu"
    """Step budget and evaluation frequency (see PROFILES)."""
    steps: int | None = None
    """Override the profile's training steps per run."""
    eval_freq: int | None = None
    """Override the profile's evaluation frequency."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic policy)."""
    throughput_steps: int = 1_000
    """Timed steps per throughput measurement (after 1000 random steps); 0 skips the throughput phase."""
    throughput_repeats: int = 2
    """Interleaved throughput measurements per algorithm."""
    threads: int | None = 1
    """Torch threads (the same for every run)."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/dqs_mujoco")
    """Where the training runs are written."""
    name: str = "dqs_mujoco"
    """Results file: benchmarks/results/<name>.json."""


def train_run(
    env: str, algo: str, seed: int, args: MujocoArgs, profiles: Profiles = PROFILES, hyperparams: dict[str, str] | None = None
) -> dict[str, Any]:
    """One training run (``hyperparams``: `train.py --hyperparams` overrides); returns its evaluation curve (and
    success rates, for tasks that report them) and timing."""
    steps = args.steps or profiles[args.profile]["steps"]
    eval_freq = args.eval_freq or profiles[args.profile]["eval_freq"]
    run_dir = train(
        TrainArgs(
            algo=algo,
            env=env,
            total_timesteps=steps,
            seed=seed,
            eval_freq=eval_freq,
            eval_episodes=args.eval_episodes,
            log_dir=args.work_dir / args.profile,
            progress=False,
            verbose=0,
            num_threads=args.threads,
            device=args.device,
            hyperparams=hyperparams or {},
        )
    )
    evaluations = np.load(run_dir / "evaluations.npz")
    results = json.loads((run_dir / "results.json").read_text())
    returns = evaluations["results"].mean(axis=1)
    successes = {"eval_success_rates": evaluations["successes"].mean(axis=1).tolist()} if "successes" in evaluations else {}
    return {
        "env": env,
        "algo": algo,
        "seed": seed,
        "steps": steps,
        "run_dir": str(run_dir),
        "eval_timesteps": evaluations["timesteps"].tolist(),
        "eval_returns": returns.tolist(),
        "final_return": results["final_eval_mean_reward"],
        "mean_eval_return": float(returns.mean()),
        "train_wall_time_s": results["wall_time_s"],
        **successes,
    }


def throughput(env: str, args: MujocoArgs) -> dict[str, Any]:
    """Median steps/s of each algorithm (interleaved) and the ratio first/second."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    env_id = resolve_env_id(env)
    samples = measure_interleaved(args.algos, env_id, args.throughput_steps, 1000, args.throughput_repeats, args.device)
    medians = {algo: statistics.median(values) for algo, values in samples.items()}
    acting = {algo: acting_cost(warmed_up_model(algo, env_id, 1000, args.device, 0), env_id) for algo in args.algos}
    first, second = args.algos[:2]
    return {"steps_per_s": samples, "median_steps_per_s": medians, "ratio": medians[first] / medians[second],
            "acting": acting}  # fmt: skip


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per env and algo: mean ± std and IQM over seeds of the final and the mean evaluation return (the area under
    the curve), and of the final and mean success rate where recorded."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        summary.setdefault(run["env"], {}).setdefault(run["algo"], {})
    for env, algos in summary.items():
        for algo in algos:
            chosen = [r for r in runs if r["env"] == env and r["algo"] == algo]
            finals = [r["final_return"] for r in chosen]
            means = [r["mean_eval_return"] for r in chosen]
            algos[algo] = {
                "seeds": len(chosen),
                "final_mean": float(np.mean(finals)),
                "final_std": float(np.std(finals)),
                "final_iqm": float(trim_mean(finals, 0.25)),
                "mean_eval_mean": float(np.mean(means)),
                "mean_eval_std": float(np.std(means)),
                "mean_eval_iqm": float(trim_mean(means, 0.25)),
            }
            if all("eval_success_rates" in r for r in chosen):
                rates = [r["eval_success_rates"] for r in chosen]
                algos[algo] |= {
                    "final_success_mean": float(np.mean([r[-1] for r in rates])),
                    "mean_success_mean": float(np.mean([np.mean(r) for r in rates])),
                }
    return summary


def _read_records(folder: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob(pattern))]


def _restore_records(records: Path, args: MujocoArgs, profiles: Profiles) -> None:
    """Recreate missing record files from the committed results file (e.g. in a fresh clone, where runs/ is empty),
    so that finished runs are not trained again."""
    path = RESULTS_DIR / f"{args.name}.json"
    state = json.loads(path.read_text()) if path.is_file() else {}
    if state.get("profile") != args.profile:
        return
    steps = args.steps or profiles[args.profile]["steps"]
    entries = {f"run__{r['env']}__{r['algo']}__seed{r['seed']}": r for r in state.get("runs", []) if r["steps"] == steps}
    entries |= {f"throughput__{env}": {"env": env, **t} for env, t in state.get("throughput", {}).items()}
    restore_missing((records / f"{name}.json", entry) for name, entry in entries.items())


def main(args: MujocoArgs, profiles: Profiles = PROFILES, overrides: dict[str, dict[str, str]] | None = None) -> None:
    """Run every missing (env, algo, seed) of the grid, then print the summary. ``overrides``: per env, the
    `train.py --hyperparams` of every algorithm's runs on it."""
    records = args.work_dir / args.profile / "records"
    records.mkdir(parents=True, exist_ok=True)
    _restore_records(records, args, profiles)

    def record(name: str, payload: dict[str, Any]) -> None:
        atomic_write(records / f"{name}.json", lambda p: p.write_text(json.dumps(payload, indent=2)))
        rebuild_results()

    def rebuild_results() -> None:
        """The results file from every record, summarised by this code."""
        runs = _read_records(records, "run__*.json")
        ratios = {entry["env"]: entry for entry in _read_records(records, "throughput__*.json")}
        write_results(
            args.name,
            {
                "profile": args.profile,
                "config": vars(args) | {"work_dir": str(args.work_dir)},
                "throughput": ratios,
                "runs": runs,
                "summary": summarize(runs),
            },
        )

    for env in args.envs:
        if args.throughput_steps and not (records / f"throughput__{env}.json").is_file():
            ratio = throughput(env, args)
            record(f"throughput__{env}", {"env": env, **ratio})
            print(f"{env}: throughput {ratio['median_steps_per_s']} ratio {ratio['ratio']:.2f}", flush=True)
        for seed in args.seeds:
            for algo in args.algos:
                name = f"run__{env}__{algo}__seed{seed}"
                if (records / f"{name}.json").is_file():
                    continue
                run = train_run(env, algo, seed, args, profiles, (overrides or {}).get(env))
                record(name, run)
                print(
                    f"{env} {algo} seed {seed}: final {run['final_return']:.1f} ({run['train_wall_time_s']:.0f} s)", flush=True
                )
    rebuild_results()
    runs = _read_records(records, "run__*.json")
    for env, algos in summarize(runs).items():
        for algo, s in algos.items():
            print(
                f"{env:<12}{algo:<6} final {s['final_mean']:9.1f} ± {s['final_std']:7.1f}   "
                f"mean eval {s['mean_eval_mean']:9.1f} ± {s['mean_eval_std']:7.1f}   ({s['seeds']} seeds)"
            )
    print(f"wrote {RESULTS_DIR / f'{args.name}.json'}")


if __name__ == "__main__":
    main(tyro.cli(MujocoArgs))
