"""Run folders: ``<log_dir>/<algo>/<env>__seed<seed>__<timestamp>/`` with a ``config.yaml`` that makes the run
reproducible (resolved config, exact command, seed, package versions, git commit)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import itertools
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PACKAGES = (
    "diffusion-baselines", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "gymnasium-robotics", "mujoco",
    "minari", "numpy", "scipy", "pot", "tyro",
)  # fmt: skip


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


#: What the project's own tools write into the tree (benchmark results and the report rendered from them): changes
#: there do not make the code dirty (a benchmark rewrites its results file after every finished trial).
GENERATED = ("benchmarks/results", "docs/benchmarks.md", "docs/figures")


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when files other than `GENERATED` have changes), or None outside
    git."""
    root = Path(__file__).resolve().parents[1]
    excluded = [f":(exclude){path}" for path in GENERATED]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", *excluded],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def new_run_dir(log_dir: str | Path, algo: str, env_name: str, seed: int) -> Path:
    """Create and return a fresh run folder; a numeric suffix avoids clashes within the same second. Creating the
    folder is the claim (``mkdir`` fails for all but one process), so concurrent runs never share or crash on one."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(log_dir) / algo / f"{env_name.replace('/', '_')}__seed{seed}__{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in itertools.count(1):
        run_dir = base if suffix == 1 else base.with_name(f"{base.name}_{suffix}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def _yaml_safe(value: Any) -> Any:
    """Turn classes, schedules and other objects into readable strings so the config stays plain YAML."""
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's config.yaml (`write_run_config`): ``{}`` when it has none or holds no mapping; a ValueError that
    names the file when it is not YAML."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not a run's config.yaml ({str(error).splitlines()[0]})") from None
    return loaded if isinstance(loaded, dict) else {}


def write_run_config(run_dir: Path, config: dict[str, Any], command: str) -> Path:
    """Write ``config.yaml``: the given config plus the ``command`` that reproduces the run, the process's own command
    line (``argv``: a sweep worker's or a benchmark's when they started it), versions, commit, host and start time."""
    record = {
        **config,
        "command": command,
        "argv": shlex.join([Path(sys.executable).name, *sys.argv]),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "host": {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor()},
        "versions": package_versions(),
    }
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(_yaml_safe(record), sort_keys=False))
    return path
