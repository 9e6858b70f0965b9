"""The kinds of model `train.py` runs, one plug-in module each (`runner.kinds.base.Runner`), and `KINDS`, the one
table that `train`, the sweep engine and the contract tests read. A new kind is a module here and a line in `KINDS`;
its algorithms then register with ``kind=<its name>`` in `runner.registry`."""

from runner.kinds.base import Runner
from runner.kinds.causal import Causal
from runner.kinds.crystal import Crystal
from runner.kinds.offline import Offline
from runner.kinds.online import Online
from runner.kinds.pde import PDE
from runner.kinds.sampler import Sampler

KINDS: dict[str, type[Runner]] = {"online": Online, "offline": Offline, "sampler": Sampler, "pde": PDE,
                                  "crystal": Crystal, "causal": Causal}  # fmt: skip


def runner_of(kind: str) -> type[Runner]:
    """The `Runner` of a registered algorithm's ``kind``; a ValueError listing the kinds when there is none."""
    if kind not in KINDS:
        raise ValueError(f"no runner for the kind {kind!r}: register one in runner.kinds.KINDS (kinds: {', '.join(KINDS)})")
    return KINDS[kind]


__all__ = ["KINDS", "Runner", "runner_of"]
