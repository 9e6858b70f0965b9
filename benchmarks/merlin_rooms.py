"""Where Merlin loses to GCSL on PointRooms: final-step success by the rooms of the start and of the goal.

Merlin (reference tuning) and GCSL train as in `benchmarks.merlin` (same datasets, profile and hyperparameters); both
are then rolled out on the same episodes, which are grouped by whether the goal lies in the start's room, in an
adjacent room (one doorway away) or in the opposite room (two doorways). Merlin is evaluated at several test
horizons (`set_test_horizon`), fixed and "steps left" (h_t = T − t), to separate the cost of the horizon input from
the choice of test horizon. Writes ``benchmarks/results/merlin_rooms.json``.

    python -m benchmarks.merlin_rooms                      # CPU profile, expert data, seed 100, 300 episodes
    python -m benchmarks.merlin_rooms --kind random --seeds 100 101
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from agents.merlin import GCSL, Merlin
from agents.merlin.base import OfflineGoalAlgorithm
from benchmarks.common import ResultsArgs, recorded_args, source_commit, write_results
from benchmarks.merlin import PROFILES, KindName, disjoint_eval_seed, prepare_dataset, use_project_folders
from benchmarks.render import Result, Section, machine
from envs.registry import make_env
from runner.hyperparams import hyperparams_for

ENV_ID = "PointRooms-v0"
RELATIONS = ("same", "adjacent", "opposite")


@dataclass
class RoomsArgs(ResultsArgs):
    kind: KindName = "expert"
    """Dataset kind."""
    seeds: list[int] = field(default_factory=lambda: [100])
    """Seeds of the algorithms (the dataset always uses seed 0)."""
    episodes: int = 300
    """Evaluation episodes per seed (the same episodes for every method and horizon)."""
    horizons: list[int | Literal["steps_left"]] = field(default_factory=lambda: [1, 20, 50, "steps_left"])
    """Merlin's test horizons: fixed values and/or "steps_left" (T − t at step t)."""
    profile: Literal["cpu", "gpu", "tiny"] = "cpu"
    """Budget of benchmarks.merlin (gradient steps, dataset size)."""
    threads: int = 1
    """Torch CPU threads."""
    device: str = "auto"
    """Torch device."""
    work_dir: Path = Path("runs/benchmarks/merlin")
    """benchmarks.merlin's folder, whose datasets are reused (built there when missing)."""
    name: str | None = None
    """Results file: <results-dir>/<name>.json; default merlin_rooms, suffixed by the kind and profile when they
    are not expert and cpu."""


def room(position: np.ndarray) -> int:
    """Quadrant index 0-3 of a point (the walls lie on x = 0 and y = 0)."""
    return int(position[0] > 0) * 2 + int(position[1] > 0)


def relation(start: np.ndarray, goal: np.ndarray) -> str:
    """The goal's room relative to the start's: same, adjacent (one wall between them) or opposite (two doorways)."""
    different_axes = bin(room(start) ^ room(goal)).count("1")
    return RELATIONS[different_axes]


def success_by_relation(model: OfflineGoalAlgorithm, seed: int, episodes: int, horizon: int | str | None) -> dict[str, Any]:
    """Roll out ``episodes`` deterministic episodes (env seeds ``disjoint_eval_seed(seed) + k``, shared by every method
    and horizon of the seed); success rate and count per relation."""
    env = make_env(ENV_ID)
    steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 50
    outcomes: dict[str, list[float]] = {key: [] for key in RELATIONS}
    for k in range(episodes):
        obs, _ = env.reset(seed=disjoint_eval_seed(seed) + k)
        start, goal = obs["achieved_goal"].copy(), obs["desired_goal"].copy()
        info: dict[str, Any] = {}
        for t in range(steps):
            if horizon is not None:
                model.set_test_horizon(steps - t if horizon == "steps_left" else int(horizon))
            obs, _, terminated, truncated, info = env.step(model.predict(obs, deterministic=True)[0])
            if terminated or truncated:
                break
        outcomes[relation(start, goal)].append(float(info["is_success"]))
    env.close()
    return {
        "success": float(np.mean([v for values in outcomes.values() for v in values])),
        **{key: {"success": float(np.mean(v)) if v else None, "episodes": len(v)} for key, v in outcomes.items()},
    }


def main(args: RoomsArgs) -> None:
    source_commit(args.allow_dirty)
    profile = PROFILES[args.profile]
    torch.set_num_threads(args.threads)
    use_project_folders(args.work_dir, profile)
    dataset, info = prepare_dataset("PointRooms", args.kind, profile.dataset_episodes)
    runs = []
    for seed in args.seeds:
        for name, algo_class in (("GCSL", GCSL), ("Merlin", Merlin)):
            hyperparams = hyperparams_for(name.lower(), ENV_ID)
            model = algo_class(hyperparams.policy, make_env(ENV_ID), dataset=dataset, seed=seed, device=args.device,
                               **hyperparams.kwargs)  # fmt: skip
            start = time.perf_counter()
            model.learn(profile.steps)
            train_s = time.perf_counter() - start
            settings: list[int | str | None] = [None] if name == "GCSL" else list(args.horizons)
            for horizon in settings:
                result = success_by_relation(model, seed, args.episodes, horizon)
                runs.append({"method": name, "seed": seed, "test_horizon": horizon, "train_s": train_s,
                             "her_ratio": model.config.her_ratio, **result})  # fmt: skip
                cells = "  ".join(
                    f"{key} {result[key]['success']:.2f}" for key in RELATIONS if result[key]["success"] is not None
                )
                label = name if horizon is None else f"{name} h={horizon}"
                print(f"seed {seed} {label:<22} success {result['success']:.2f}  ({cells})", flush=True)
    payload = {"config": recorded_args(args), "profile": args.profile, "profile_config": asdict(profile),
               "dataset": {"id": dataset.dataset_id, **info}, "runs": runs}  # fmt: skip
    suffixes = [value for value, default in ((args.kind, "expert"), (args.profile, "cpu")) if value != default]
    path = write_results(args.name or "_".join(["merlin_rooms", *suffixes]), payload, args)
    print(f"wrote {path}")


TEXT = """\
## Merlin vs GCSL on PointRooms, by the rooms of start and goal

`python -m benchmarks.merlin_rooms --kind {config[kind]} --seeds {seeds}` (profile {profile}).

Machine: {machine}. `{dataset}`, {budget[steps]} gradient steps, the same {config[episodes]} evaluation episodes per \
seed for every row; success rate (episodes) by whether the goal is in the start's room, an adjacent room or the \
opposite room. Merlin uses the reference's tuning and is evaluated at fixed test horizons and at h = steps left.

| method | test horizon | all | {relations} |
|---|---|---|{rules}"""
ROW = "| {method} | {horizon} | {overall:.2f} | {cells} |"


def render(result: Result, figures: Path) -> str:
    """Success rate per method and test horizon, overall and by the rooms of start and goal (pooled over seeds)."""
    config = result["config"]
    lines = [TEXT.format(config=config, seeds=" ".join(map(str, config["seeds"])), profile=result["profile"],
                         machine=machine(result), dataset=result["dataset"]["id"], budget=result["profile_config"],
                         relations=" | ".join(RELATIONS), rules="---|" * len(RELATIONS))]  # fmt: skip
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in result["runs"]:
        horizon = "-" if run["test_horizon"] is None else str(run["test_horizon"])
        groups.setdefault((run["method"], horizon), []).append(run)
    for (method, horizon), runs in groups.items():
        cells = []
        for key in RELATIONS:
            measured = [r[key] for r in runs if r[key]["success"] is not None]
            total = sum(m["episodes"] for m in measured)
            rate = sum(m["success"] * m["episodes"] for m in measured) / total if total else float("nan")
            cells.append(f"{rate:.2f} ({total})")
        overall = float(np.mean([r["success"] for r in runs]))
        lines.append(ROW.format(method=method, horizon=horizon, overall=overall, cells=" | ".join(cells)))
    return "\n".join(lines)


SECTION = Section(("merlin_rooms",), render)


if __name__ == "__main__":
    main(tyro.cli(RoomsArgs))
