"""Causal abstractions from contrastive pairs: what a family of possible interventions identifies (Li, Kaba &
Ravanbakhsh, AISTATS 2025, arXiv 2503.10834) and a learner that recovers it (ILCM of Brehmer, de Haan, Lippe & Cohen,
NeurIPS 2022, arXiv 2203.16437, extended to a posterior over a family of target sets).

Modules (latents 0-indexed in code; everything printed names them z1..zn):

* `pairs` — the pair dataset every part reads (`Pairs`).
* `graphs` — DAGs as bool adjacency matrices: chain, fork, collider, diamond, Erdős–Rényi; ancestors, descendants.
* `identifiability` — what (G, 𝓘) identifies: `nd_partition` (R1 blocks and quotient), `isolated_targets` (R2),
  `safe_blocks` (R0), together in `abstraction` → `Abstraction`; CLI ``python -m causal.identifiability``.
* `scm` — additive-noise SCMs (linear-Gaussian as ILCM's, tanh-MLP) and counterfactual pairs under perfect
  interventions.
* `mixing` — the observation map: leaky-ReLU MLP with condition-filtered weights, or a rotation; with its inverse.
* `data` — the registered tasks (`resolve_task`, `task`, `load_split` with an .npz cache); CLI ``python -m causal.data``.
* `metrics` — block matching, informativeness, purity, leakage, sufficiency gap, DCI, target Jaccard (`evaluate`).
* `flows` — ILCM's solution functions: conditional affine flows with masked conditioners.
* `interventions` — families of target sets with a prior, and the posterior q(S | x, x̃) restricted to a family.
* `ilcm` — the learner: ILCM (and its dVAE and β-VAE baselines) as one module with its ELBO and training loss.

Numpy, scipy, scikit-learn and torch; of this project it imports `core` only.
"""
