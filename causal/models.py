"""The learners of `causal.ilcm` trained on a registered task of `causal.data` with the library's `core.trainer.Trainer`
(``python train.py --algo ilcm --env chain4-12-34.nonlinear.mlp``), one class per algorithm:

* `ILCMLearner` — ILCM over the task's family of target sets (∅ included): the subset extension;
* `ILCMAtomic` — ILCM as released by Brehmer, de Haan, Lippe & Cohen (NeurIPS 2022, arXiv 2203.16437): the family
  {∅} ∪ singletons and solution functions that read every other noise;
* `ILCMOracle` — ILCM fed each pair's true target set (an upper bound of what inferring it costs);
* `DVAE`, `BetaVAE` — the paper's baselines (solution functions without context; a β-VAE on single observations).

Training follows the reference recipe (``ws_crl/training.py``, ``config/training/scaling.yaml``) scaled to the step
budget: the phases of `causal.ilcm.recipe_phase` at progress step / ``schedule_steps``, Adam (3e-4) with ``restarts``
cosine cycles, each restarting Adam's state (the reference: 90 epochs, restarts every 30), gradient norms clipped at
10. ``schedule_steps`` left at 0 is fixed to the first ``learn`` call's budget and then kept in the config, so a
resumed run continues the same schedule.

The periodic evaluation is the validation ELBO and, for a learner that infers target sets, their accuracy against the
true sets (best over relabellings of the learned latents); `CausalLearner.theory_metrics` scores the encoding against
what the task's (G, 𝓘) identifies (`causal.identifiability.abstraction`; Li, Kaba & Ravanbakhsh, AISTATS 2025, arXiv
2503.10834) with `causal.metrics.evaluate` on the test split. The data of a run are the task's at the run's seed (SCM
weights, mixing and pairs), so seeds differ in data and initialisation alike.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from causal.data import load_split, task
from causal.identifiability import Abstraction, abstraction
from causal.ilcm import ILCM, ILCMConfig, Phase, recipe_phase
from causal.interventions import TargetFamily
from causal.metrics import Encodings, evaluate
from causal.pairs import Pairs
from core.config import require_positive
from core.trainer import Trainer

FamilyMode = Literal["given", "atomic", "oracle"]
#: Seed of the evaluation's draws: every evaluation of every run sees the same noise.
EVAL_SEED = 12_345
#: Observations encoded at once outside training.
ENCODE_BATCH = 4_096


@dataclass(frozen=True)
class CausalLearnerConfig(ILCMConfig):
    """The architecture (`causal.ilcm.ILCMConfig`) plus the family the learner is given and the training run."""

    family: FamilyMode = "given"
    """"given": the task's family of target sets with ∅ (the subset extension); "atomic": {∅} ∪ singletons (ILCM as
    released); "oracle": the given family, with each pair's true target set fed to the loss."""
    batch_size: int = 64
    """Pairs per gradient step (the reference's 64)."""
    learning_rate: float = 3e-4
    """Adam's learning rate at the top of each cosine cycle (the reference's)."""
    restarts: int = 3
    """Cosine cycles of the learning rate over ``schedule_steps``, each restarting Adam (the reference: 3 of 30 epochs)."""
    grad_clip: float = 10.0
    """Gradient norms are clipped to this (the reference's 10)."""
    schedule_steps: int = 0
    """Gradient steps the recipe's phases and the cosine cycles span; 0: the first ``learn`` call's budget."""
    eval_freq: int = 1_000
    """Gradient steps between evaluations (0: only the final one)."""
    eval_pairs: int = 2_000
    """Validation pairs of the periodic evaluation."""
    metric_pairs: int = 5_000
    """Train pairs the theory metrics fit on, and test pairs they score (`causal.metrics.evaluate`)."""
    log_interval: int = 100
    """Gradient steps between logged losses."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(
            self, ("batch_size", "learning_rate", "restarts", "grad_clip", "eval_pairs", "metric_pairs", "log_interval")
        )
        if self.schedule_steps < 0 or self.eval_freq < 0:
            raise ValueError(f"schedule_steps and eval_freq must be >= 0, got {self.schedule_steps}, {self.eval_freq}")

    def architecture(self) -> ILCMConfig:
        """The `ILCMConfig` part."""
        return ILCMConfig(**{spec.name: getattr(self, spec.name) for spec in fields(ILCMConfig)})


def task_abstraction(name: str) -> Abstraction:
    """What the task's graph and family identify (R1 blocks, R2 latents, R0 sets)."""
    spec = task(name)
    return abstraction(spec.adjacency(), spec.family)


def score_encoding(result: Abstraction, train: Pairs, test: Pairs, encode: Callable[[np.ndarray], np.ndarray],
                   predicted_targets: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """`causal.metrics.evaluate` of an encoder of observations (fitted on ``train.x``, scored on ``test.x``) as plain
    values; with ``predicted_targets`` (inferred (N, d) masks of the test pairs) also the target Jaccard per block."""
    report = evaluate(result, Encodings.of(train, encode(train.x)), Encodings.of(test, encode(test.x)), predicted_targets,
                      None if predicted_targets is None else test.target_masks())  # fmt: skip
    return report.as_dict()


def target_agreement(inferred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Mean Jaccard index and exact-match rate of inferred (N, d) and true (N, n) target masks, under the relabelling of
    the learned latents that maximises the Jaccard (every permutation: d = n ≤ 5 here); two empty sets agree."""
    best = (-1.0, 0.0)
    for order in itertools.permutations(range(inferred.shape[1])):
        relabelled = inferred[:, list(order)]
        union = (relabelled | true).sum(axis=1)
        jaccard = np.where(union > 0, (relabelled & true).sum(axis=1) / np.maximum(union, 1), 1.0).mean()
        if jaccard > best[0]:
            best = (float(jaccard), float((relabelled == true).all(axis=1).mean()))
    return best


class CausalLearner(Trainer):
    """A learner of `causal.ilcm` on a registered task; every knob of `CausalLearnerConfig` is open. The registered
    algorithms are its subclasses, each fixing the model and the family (`fixed_knobs`).

    :param target: A registered task name (`causal.data.resolve_task`: case ids such as "F2.linear.mlp" too)
    :param seed: Seeds the task's data, the generator of batches and draws, torch, numpy and random (None: 0)
    :param device: "auto", "cpu", "cuda", ...
    :param hyperparams: Fields of `CausalLearnerConfig`, except the `fixed_knobs`
    """

    config_class: ClassVar[type] = CausalLearnerConfig
    #: Knobs the algorithm sets itself; passing one is an error.
    fixed_knobs: ClassVar[dict[str, Any]] = {}
    evaluates_at_end = True  # one pass over eval_pairs: the final ELBO is always measured
    selection_metric = "negative_elbo"
    config: CausalLearnerConfig

    def __init__(self, target: str, seed: int | None = None, device: str | torch.device = "auto",
                 **hyperparams: Any) -> None:  # fmt: skip
        spec = task(target)
        pinned = sorted(set(hyperparams) & set(self.fixed_knobs))
        if pinned:
            raise ValueError(f"{type(self).__name__} fixes {', '.join(f'{k}={self.fixed_knobs[k]!r}' for k in pinned)}: "
                             "leave it out")  # fmt: skip
        super().__init__(spec.name, 0 if seed is None else seed, device, "auto", {**hyperparams, **self.fixed_knobs})
        cfg = self.config
        self.train_pairs, self.val_pairs = (load_split(spec.name, split, self.seed) for split in ("train", "val"))
        n = self.train_pairs.num_latents
        family = TargetFamily.atomic(n) if cfg.family == "atomic" else TargetFamily(self.train_pairs.family, n)
        self.generator = torch.Generator(self.device).manual_seed(self.seed)
        self.network = ILCM(spec.dim_x, family, cfg.architecture()).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=cfg.learning_rate)
        self._train = self._tensors(self.train_pairs)
        self._val = self._tensors(self.val_pairs.subset(slice(0, cfg.eval_pairs)))
        self.abstraction = task_abstraction(spec.name)

    def _tensors(self, pairs: Pairs) -> tuple[Tensor, Tensor, Tensor]:
        """x, x̃ and the index of the true target set in the family, on the device."""
        x, x_tilde = (torch.as_tensor(array, device=self.device) for array in (pairs.x, pairs.x_tilde))
        return x, x_tilde, torch.as_tensor(pairs.target_index, device=self.device)

    @property
    def infers_targets(self) -> bool:
        """Whether q(S | x, x̃) is trained (not for the β-VAE, which has none, nor for the oracle, which ignores it)."""
        return self.config.model != "betavae" and self.config.family != "oracle"

    # --- the schedule ---------------------------------------------------------------------------------------------

    def _before_learn(self, end: int) -> None:
        if self.config.schedule_steps == 0:
            self.config = replace(self.config, schedule_steps=max(end, 1))

    def phase(self, step: int) -> Phase:
        """The recipe's phase at ``step`` (the last one past the schedule)."""
        if self.config.schedule_steps == 0:
            raise ValueError("the schedule is unknown before learn: call learn, or pass schedule_steps")
        return recipe_phase(min(step / self.config.schedule_steps, 1.0))

    def _cycle_position(self, step: int) -> tuple[int, int]:
        """(step within its cosine cycle, cycle length)."""
        length = math.ceil(self.config.schedule_steps / self.config.restarts)
        return step % length, length

    # --- training and evaluation ----------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One Adam step on a random batch of training pairs, in the recipe's phase of this step."""
        cfg, step = self.config, self.num_timesteps
        phase = self.phase(step)
        position, length = self._cycle_position(step)
        if position == 0 and step > 0:
            self.optimizer.state.clear()  # a restart: Adam starts afresh, as the reference's
        for group in self.optimizer.param_groups:
            group["lr"] = 0.5 * cfg.learning_rate * (1.0 + math.cos(math.pi * position / length))
        x, x_tilde, targets = self._train
        rows = torch.randint(len(x), (cfg.batch_size,), generator=self.generator, device=self.device)
        oracle = targets[rows] if cfg.family == "oracle" else None
        loss, stats = self.network.loss(x[rows], x_tilde[rows], phase, oracle, self.generator)
        self._finite_or_raise(loss, "lower learning_rate or grad_clip")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.num_timesteps += 1
        return {**stats, "grad_norm": grad_norm.item(), "beta": phase.beta}

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(N, dim_x) observations -> (N, n) learned causal latents (`causal.ilcm.ILCM.encode`)."""
        batches = torch.as_tensor(x, device=self.device).split(ENCODE_BATCH)
        return torch.cat([self.network.encode(batch) for batch in batches]).cpu().numpy()

    @torch.no_grad()
    def infer_targets(self, pairs: Pairs) -> np.ndarray:
        """(N, n) bool: the most probable target set of each pair under q(S | x, x̃), over the learned latents."""
        x, x_tilde, _ = self._tensors(pairs)
        chosen = torch.cat([self.network.infer_targets(a, b).argmax(dim=1)
                            for a, b in zip(x.split(ENCODE_BATCH), x_tilde.split(ENCODE_BATCH))])  # fmt: skip
        return self.network.posterior.family.masks[chosen].bool().cpu().numpy()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """``negative_elbo``: −ELBO per pair on the validation pairs (with the true sets for the oracle; the β-VAE's:
        of x and x̃ as single observations), with fixed draws; for a learner that infers target sets,
        ``target_jaccard`` and ``target_accuracy`` (exact sets) of its most probable sets against the true ones,
        best over relabellings of the learned latents."""
        x, x_tilde, targets = self._val
        oracle = targets if self.config.family == "oracle" else None
        draws = torch.Generator(self.device).manual_seed(EVAL_SEED)
        elbo = self.network.elbo(x, x_tilde, oracle, generator=draws).mean().item()
        metrics = {"negative_elbo": -elbo}
        if self.infers_targets:
            pairs = self.val_pairs.subset(slice(0, self.config.eval_pairs))
            jaccard, accuracy = target_agreement(self.infer_targets(pairs), pairs.target_masks())
            metrics |= {"target_jaccard": jaccard, "target_accuracy": accuracy}
        return metrics

    def _evaluation(self, step: int, progress_bar: bool) -> dict[str, float]:
        return self.evaluate()

    def theory_metrics(self) -> dict[str, Any]:
        """The encoding scored against the task's abstraction (`score_encoding`): fitted on the first
        ``metric_pairs`` training pairs, scored on as many test pairs (tens of seconds at 5,000)."""
        rows = slice(0, self.config.metric_pairs)
        train, test = self.train_pairs.subset(rows), load_split(self.target_name, "test", self.seed).subset(rows)
        predicted = self.infer_targets(test) if self.infers_targets else None
        return score_encoding(self.abstraction, train, test, self.encode, predicted)

    def _state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    @classmethod
    def _from_checkpoint(cls, state: dict[str, Any], target: Any | None, device: str | torch.device) -> CausalLearner:
        """The checkpoint's seed fixes the data, and its config the schedule; the fixed knobs are the class's."""
        config = {key: value for key, value in state["config"].items() if key not in cls.fixed_knobs}
        return cls(target if target is not None else state["target"], seed=state["seed"], device=device, **config)


class ILCMLearner(CausalLearner):
    """ILCM over the task's family of target sets (the subset extension), solution functions in a fixed order."""

    fixed_knobs: ClassVar[dict[str, Any]] = {"model": "ilcm", "family": "given"}


class ILCMAtomic(CausalLearner):
    """ILCM as released: the family {∅} ∪ singletons, solution functions reading every other noise."""

    fixed_knobs: ClassVar[dict[str, Any]] = {"model": "ilcm", "family": "atomic", "context": "others"}


class ILCMOracle(CausalLearner):
    """ILCM over the task's family, fed each pair's true target set."""

    fixed_knobs: ClassVar[dict[str, Any]] = {"model": "ilcm", "family": "oracle"}


class DVAE(CausalLearner):
    """The dVAE baseline over the task's family: solution functions without context."""

    fixed_knobs: ClassVar[dict[str, Any]] = {"model": "dvae", "family": "given"}


class BetaVAE(CausalLearner):
    """The β-VAE baseline on single observations."""

    fixed_knobs: ClassVar[dict[str, Any]] = {"model": "betavae"}


__all__ = ["DVAE", "BetaVAE", "CausalLearner", "CausalLearnerConfig", "ILCMAtomic", "ILCMLearner", "ILCMOracle",
           "score_encoding", "target_agreement", "task_abstraction"]  # fmt: skip
