"""Offline goal-reaching datasets: build them as Minari datasets, list them, load any of them as a `GoalDataset`.

Our datasets are named ``diffusion-baselines/<task>-<kind>-v0`` (`dataset_id`), e.g.
``diffusion-baselines/fetchreach-expert-v0``, and live where Minari keeps datasets (``MINARI_DATASETS_PATH``, default
``~/.minari/datasets``). ``expert`` episodes come from the task's noisy scripted expert (`envs.experts`), ``random``
episodes from uniform random actions. Minari datasets with goal observations from elsewhere (D4RL pointmaze/antmaze)
load the same way. Nothing here downloads anything.

    python -m envs.datasets build --env FetchReach --kind expert --episodes 2000 --seed 0
    python -m envs.datasets list
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import minari
import numpy as np
import tyro
from gymnasium import spaces
from minari.data_collector import EpisodeBuffer
from minari.serialization import deserialize_space
from minari.storage import get_dataset_path

from core.cli import run_cli
from core.interrupts import Interrupts
from envs.experts import ExpertConfig, make_expert
from envs.goal_dataset import GoalDataset
from envs.registry import ENV_ALIASES, make_env, resolve_env_id

NAMESPACE = "diffusion-baselines"  # Minari namespace of the datasets built here
GOAL_TASKS = ("PointReach", "PointRooms", "ReacherGoal", "FetchReach", "FetchPush")  # tasks with a scripted expert
KINDS = ("expert", "random")  # how the actions of a dataset were chosen
GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")  # keys a goal dataset's observations must have
DEFAULT_EPISODES = {"FetchPush": 40_000}  # WGCSL's dataset sizes: 2000 episodes, 40000 for the Fetch manipulation tasks
CHUNK_EPISODES = 500  # episodes held in memory before they are appended to the dataset on disk

Task = Literal["PointReach", "PointRooms", "ReacherGoal", "FetchReach", "FetchPush"]
Kind = Literal["expert", "random"]


def _absolute_datasets_root() -> None:
    """Make a relative ``MINARI_DATASETS_PATH`` absolute: Minari 0.5.4 joins a relative root twice when it opens a
    dataset (``root/id/data/root/id/data/main_data.hdf5``)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    if root and not os.path.isabs(root):
        os.environ["MINARI_DATASETS_PATH"] = os.path.abspath(root)


def task_name(env: str) -> str:
    """Short name (``FetchReach``) of one of `GOAL_TASKS`, given by short name or Gymnasium id."""
    env_id = resolve_env_id(env)
    for name in GOAL_TASKS:
        if ENV_ALIASES[name] == env_id:
            return name
    raise ValueError(f"{env!r} is not a goal task with a dataset builder; choose one of {', '.join(GOAL_TASKS)}.")


def default_episodes(env: str) -> int:
    """Number of episodes of the task's WGCSL dataset (2000, or 40000 for FetchPush)."""
    return DEFAULT_EPISODES.get(task_name(env), 2000)


def dataset_id(env: str, kind: str) -> str:
    """The naming rule of our datasets: ``diffusion-baselines/<task short name in lower case>-<kind>-v0``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}.")
    return f"{NAMESPACE}/{task_name(env).lower()}-{kind}-v0"


def full_dataset_id(dataset: str) -> str:
    """Add our namespace to an id given without one (``fetchreach-expert-v0``)."""
    return dataset if "/" in dataset else f"{NAMESPACE}/{dataset}"


def parse_dataset_id(dataset: str) -> tuple[str, str] | None:
    """(task, kind) of an id that follows our naming rule (`dataset_id`), else None."""
    match = re.fullmatch(rf"{NAMESPACE}/([a-z]+)-({'|'.join(KINDS)})-v0", full_dataset_id(dataset))
    tasks = {name.lower(): name for name in GOAL_TASKS}
    if match is None or match[1] not in tasks:
        return None
    return tasks[match[1]], match[2]


def build_command(dataset: str) -> str | None:
    """The CLI command that builds ``dataset`` when its id follows our naming rule, else None."""
    parsed = parse_dataset_id(dataset)
    if parsed is None:
        return None
    task, kind = parsed
    return f"python -m envs.datasets build --env {task} --kind {kind} --episodes {default_episodes(task)} --seed 0"


def _requirements(env_id: str) -> list[str]:
    """Pinned packages the task's environment needs (stored in the metadata; MuJoCo versions change the numbers)."""
    packages = {
        "ReacherGoal": ["diffusion-baselines", "mujoco"],
        "FetchReach": ["gymnasium-robotics", "mujoco"],
        "FetchPush": ["gymnasium-robotics", "mujoco"],
    }.get(task_name(env_id), ["diffusion-baselines"])
    return [f"{name}=={importlib.metadata.version(name)}" for name in packages]


def collect_episodes(
    env: str, kind: str, episodes: int, seed: int, expert: ExpertConfig | None = None
) -> Iterator[EpisodeBuffer]:
    """Roll out ``episodes`` episodes and yield them as Minari episode buffers.

    One `numpy.random.SeedSequence` of ``seed`` gives every episode's reset seed (stored in the buffer) and the
    Generator of the actions, so the same arguments give identical episodes.
    """
    env_id = resolve_env_id(env)
    task = make_env(env_id)
    policy = make_expert(env_id, expert) if kind == "expert" else None
    action_space = task.action_space
    assert isinstance(action_space, spaces.Box)
    reset_sequence, action_sequence = np.random.SeedSequence(seed).spawn(2)
    episode_seeds = np.random.default_rng(reset_sequence).integers(2**31 - 1, size=episodes)
    rng = np.random.default_rng(action_sequence)
    for index, episode_seed in enumerate(episode_seeds):
        obs, info = task.reset(seed=int(episode_seed))
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        # Fetch's reset info is empty: success at reset comes from the reward (0 exactly when successful).
        successes = [1.0 + float(task.unwrapped.compute_reward(obs["achieved_goal"], obs["desired_goal"], info))]
        terminated = truncated = False
        while not (terminated or truncated):
            if policy is None:
                action = rng.uniform(action_space.low, action_space.high).astype(action_space.dtype)
            else:
                action = policy(obs, rng)
            obs, reward, terminated, truncated, info = task.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            successes.append(info["is_success"])
        yield EpisodeBuffer(
            id=index,
            seed=int(episode_seed),
            observations={key: np.stack([o[key] for o in observations]) for key in GOAL_KEYS},
            actions=np.stack(actions),
            rewards=np.asarray(rewards, dtype=np.float64),
            terminations=np.asarray(terminations),
            truncations=np.asarray(truncations),
            infos={"is_success": np.asarray(successes, dtype=np.float64)},
        )
    task.close()


def build_dataset(
    env: str, kind: str, episodes: int, seed: int, force: bool = False, expert: ExpertConfig | None = None
) -> str:
    """Collect a goal dataset and write it with Minari; returns its id (`dataset_id`).

    Nothing is ever lost: the dataset is built under a temporary id, checked, and only then moved to its final id
    (with ``force``, the old dataset is moved aside first and deleted last); an interrupted or failed build deletes
    only its own temporary dataset. A lock per id refuses a second concurrent build of the same id.

    :param env: Task, short name or id (one of `GOAL_TASKS`)
    :param kind: "expert" (noisy scripted expert) or "random" (uniform random actions)
    :param episodes: Number of episodes
    :param seed: Seed of resets and actions (same seed, same arrays)
    :param force: Replace an existing dataset of the same id instead of failing
    :param expert: Noise of the expert (default `ExpertConfig()`); ignored for random data
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be a positive number of episodes, got {episodes}")
    _absolute_datasets_root()
    name, env_id, expert = task_name(env), resolve_env_id(env), expert or ExpertConfig()
    identifier = dataset_id(name, kind)
    path = get_dataset_path(identifier)
    if path.exists() and not force:
        raise FileExistsError(f"Dataset {identifier!r} already exists at {path}; pass --force (force=True) to overwrite it.")
    interrupts = Interrupts()  # SIGTERM as Ctrl-C: the cleanup below runs (the default action would skip it)
    with _build_lock(path), interrupts.installed(), interrupts.abortable(on_first=True):
        _remove_stale_builds(identifier)
        temporary = identifier.replace("-v0", f"-building{os.getpid()}-v0")
        try:
            _write_dataset(temporary, env_id, kind, episodes, seed, expert)
            _check_built(temporary, episodes)
            _move_dataset(temporary, identifier)
        except BaseException:  # also Ctrl-C: delete what this build wrote, never the existing dataset
            shutil.rmtree(get_dataset_path(temporary), ignore_errors=True)
            raise
    return identifier


#: The id of a build in progress (`build_dataset` writes under it, then renames): never a dataset to list or load.
_TEMPORARY_BUILD = re.compile(r"-building(\d+)-v0$")


def _remove_stale_builds(identifier: str) -> None:
    """Delete the temporary builds of ``identifier`` left by processes that died (killed with SIGKILL, a power cut)."""
    prefix = identifier.removesuffix("-v0") + "-building"
    for other in minari.list_local_datasets():
        match = _TEMPORARY_BUILD.search(other)
        if other.startswith(prefix) and match and not _process_alive(int(match.group(1))):
            shutil.rmtree(get_dataset_path(other), ignore_errors=True)


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside a dataset folder while building it; a lock of a process that died is taken over."""
    lock = path.parent / f".{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _lock_owner_alive(lock):
                raise FileExistsError(
                    f"Another build of {path.name} is running (lock {lock}); wait for it to finish."
                ) from None
            lock.unlink(missing_ok=True)  # its owner died: the lock is stale
    else:
        raise FileExistsError(f"Could not take the lock {lock}; delete it if no build of {path.name} is running.")
    try:
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_owner_alive(lock: Path) -> bool:
    try:
        return _process_alive(int(lock.read_text() or "0"))
    except (ValueError, FileNotFoundError):
        return False


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _write_dataset(identifier: str, env_id: str, kind: str, episodes: int, seed: int, expert: ExpertConfig) -> None:
    """Collect the episodes and write them under ``identifier``, in chunks."""
    algorithm = f"scripted-expert({expert.describe()})" if kind == "expert" else "uniform-random"
    buffers = collect_episodes(env_id, kind, episodes, seed, expert)
    chunks = iter(lambda: list(itertools.islice(buffers, CHUNK_EPISODES)), [])
    spec_env = make_env(env_id)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`author_email` is set to None")
            dataset = minari.create_dataset_from_buffers(
                dataset_id=identifier,
                buffer=next(chunks),
                env=spec_env,
                eval_env=spec_env.spec,
                algorithm_name=algorithm,
                author=NAMESPACE,
                code_permalink=f"{NAMESPACE} {importlib.metadata.version(NAMESPACE)}: envs/datasets.py",
                description=(
                    f"{episodes} episodes of {env_id} ({kind}: {algorithm}), seed {seed}; goal observations, "
                    "sparse -1/0 rewards, infos['is_success'] on every step (reset included)."
                ),
                data_format="hdf5",
                requirements=_requirements(env_id),
            )
        for chunk in chunks:
            dataset.update_dataset_from_buffer(chunk)
    finally:
        spec_env.close()


def _check_built(identifier: str, episodes: int) -> None:
    """Raise unless the dataset under ``identifier`` opens and holds ``episodes`` episodes."""
    total = minari.load_dataset(identifier).total_episodes
    if total != episodes:
        raise RuntimeError(f"the build of {identifier} wrote {total} episodes instead of {episodes}")


def _move_dataset(source: str, target: str) -> None:
    """Give the dataset ``source`` the id ``target`` by renaming its folder (the id inside its metadata too). An
    existing ``target`` is moved aside first and deleted only once the new one is in place."""
    source_path, target_path = get_dataset_path(source), get_dataset_path(target)
    metadata = source_path / "data" / "metadata.json"
    content = json.loads(metadata.read_text())
    content["dataset_id"] = target
    metadata.write_text(json.dumps(content))
    old = target_path.with_name(f".{target_path.name}.replaced{os.getpid()}")
    if target_path.exists():
        os.replace(target_path, old)
    os.replace(source_path, target_path)
    shutil.rmtree(old, ignore_errors=True)


def _box_mismatch(name: str, data: gym.Space, env: gym.Space) -> str | None:
    """How the dataset's Box ``data`` differs from the environment's ``env`` (None if they agree)."""
    if not isinstance(data, spaces.Box) or not isinstance(env, spaces.Box):
        return None if type(data) is type(env) else f"{name} is {data} in the dataset but {env} in the environment"
    if data.shape != env.shape:
        return f"{name} has shape {data.shape} in the dataset but {env.shape} in the environment"
    if not (np.allclose(data.low, env.low) and np.allclose(data.high, env.high)):
        return f"{name} has bounds [{data.low}, {data.high}] in the dataset but [{env.low}, {env.high}] in the environment"
    return None


def check_spaces(dataset: minari.MinariDataset, env: gym.Env) -> None:
    """Raise ValueError naming every goal observation or action space of ``dataset`` that differs from ``env``'s."""
    env_obs = env.observation_space
    if not isinstance(env_obs, spaces.Dict) or not set(GOAL_KEYS) <= set(env_obs.spaces):
        raise ValueError(f"The environment's observation space {env_obs} is not a Dict with keys {', '.join(GOAL_KEYS)}.")
    problems = [
        _box_mismatch(f"observation_space[{key!r}]", dataset.observation_space[key], env_obs[key]) for key in GOAL_KEYS
    ]
    problems.append(_box_mismatch("action_space", dataset.action_space, env.action_space))
    problems = [p for p in problems if p is not None]
    if problems:
        env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(f"Dataset {dataset.id!r} does not match environment {env_id!r}: " + "; ".join(problems) + ".")


def _corrupt(identifier: str, error: BaseException) -> ValueError:
    """The error for a dataset whose files are damaged or incomplete (a killed build, a partial copy)."""
    command = build_command(identifier)
    fix = f"rebuild it with {command} --force" if command else "delete its folder and download or build it again"
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ValueError(
        f"Dataset {identifier!r} at {get_dataset_path(identifier)} is corrupt or incomplete ({type(error).__name__}: "
        f"{detail}); {fix}."
    )


def open_dataset(dataset: str) -> minari.MinariDataset:
    """Open a local Minari dataset by full id or by our short form, with a clear message when it is missing."""
    _absolute_datasets_root()
    identifier = full_dataset_id(dataset)
    try:
        return minari.load_dataset(identifier)
    except (OSError, KeyError, ValueError) as error:
        if not isinstance(error, FileNotFoundError):
            raise _corrupt(identifier, error) from None
        root = os.environ.get("MINARI_DATASETS_PATH", os.path.join("~", ".minari", "datasets"))
        command = build_command(identifier)
        hint = (
            f"Build it with: {command}"
            if command
            else f"If it is a remote Minari dataset, download it first: minari download {identifier}"
        )
        raise FileNotFoundError(
            f"Minari dataset {identifier!r} not found under {get_dataset_path(identifier)} (datasets root: {root}; "
            f"set MINARI_DATASETS_PATH to look elsewhere). {hint}"
        ) from None


def load_goal_dataset(dataset: str, env: gym.Env | None = None) -> GoalDataset:
    """Load a Minari dataset of goal observations (ours, D4RL pointmaze/antmaze, ...) into a flat `GoalDataset`.

    :param dataset: Full Minari id (``D4RL/pointmaze/umaze-v2``) or our id without namespace (``fetchreach-expert-v0``)
    :param env: If given, the dataset's goal observation and action spaces must match this environment's
    """
    data = open_dataset(dataset)
    obs_space = data.observation_space
    found = list(obs_space.spaces) if isinstance(obs_space, spaces.Dict) else []
    if not set(GOAL_KEYS) <= set(found):
        described = f"keys {found}" if isinstance(obs_space, spaces.Dict) else f"space {obs_space} (not a Dict)"
        raise ValueError(f"Dataset {data.id!r} has observation {described}; goal datasets need the keys {list(GOAL_KEYS)}.")
    if env is not None:
        check_spaces(data, env)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in (*GOAL_KEYS, "actions")}
    try:
        for episode in data.iterate_episodes():
            for key in GOAL_KEYS:
                columns[key].append(np.asarray(episode.observations[key]).reshape(len(episode.actions) + 1, -1))
            columns["actions"].append(np.asarray(episode.actions).reshape(len(episode.actions), -1))
    except (OSError, KeyError, ValueError) as error:
        raise _corrupt(data.id, error) from None
    return GoalDataset.from_episodes(
        columns["observation"],
        columns["achieved_goal"],
        columns["desired_goal"],
        columns["actions"],
        dataset_id=data.id,
        env_id=data.env_spec.id if data.env_spec is not None else "",
    )


def list_goal_datasets() -> dict[str, dict[str, Any]]:
    """Metadata of every local Minari dataset whose observations have the goal keys, by id."""
    _absolute_datasets_root()
    goal_datasets = {}
    for identifier, metadata in minari.list_local_datasets().items():
        if _TEMPORARY_BUILD.search(identifier):
            continue
        obs_space = deserialize_space(metadata["observation_space"]) if "observation_space" in metadata else None
        if isinstance(obs_space, spaces.Dict) and set(GOAL_KEYS) <= set(obs_space.spaces):
            goal_datasets[identifier] = metadata
    return goal_datasets


@dataclass
class BuildArgs:
    """Collect episodes of a goal task and write them as the Minari dataset diffusion-baselines/<task>-<kind>-v0."""

    env: Task
    """Goal task."""
    kind: Kind = "expert"
    """expert: the task's noisy scripted expert; random: uniform random actions."""
    episodes: int | None = None
    """Number of episodes; default: WGCSL's size for the task (2000; FetchPush 40000)."""
    seed: int = 0
    """Seed of resets and actions; the same seed gives identical arrays."""
    force: bool = False
    """Overwrite an existing dataset of the same id."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    """Noise of the scripted expert."""


@dataclass
class ListArgs:
    """Print the local Minari datasets whose observations are goal dicts."""


def main(args: BuildArgs | ListArgs) -> None:
    """CLI entry: build or list datasets; errors are one line (`core.cli.run_cli`), and so is an interrupted build."""
    try:
        run_cli(lambda: _run(args))
    except KeyboardInterrupt:
        raise SystemExit("interrupted: the partial build was deleted; an existing dataset is unchanged") from None


def _run(args: BuildArgs | ListArgs) -> None:
    if isinstance(args, ListArgs):
        print(f"Datasets root: {get_dataset_path()}")
        for identifier, metadata in list_goal_datasets().items():
            env_id = json.loads(metadata["env_spec"])["id"] if "env_spec" in metadata else "?"
            episodes, steps = metadata.get("total_episodes"), metadata.get("total_steps")
            print(
                f"{identifier:45s} {env_id:22s} {episodes:>7} episodes {steps:>9} steps  {metadata.get('algorithm_name', '')}"
            )
        return
    episodes = args.episodes if args.episodes is not None else default_episodes(args.env)
    start = time.perf_counter()
    identifier = build_dataset(args.env, args.kind, episodes, args.seed, args.force, args.expert)
    print(f"Wrote {identifier} ({episodes} episodes) to {get_dataset_path(identifier)} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(tyro.extras.subcommand_cli_from_dict({"build": BuildArgs, "list": ListArgs}))
