"""Causal abstractions from contrastive pairs: what a family of possible interventions identifies (Li, Kaba &
Ravanbakhsh, AISTATS 2025, arXiv 2503.10834) and a learner that recovers it (ILCM of Brehmer, de Haan, Lippe & Cohen,
NeurIPS 2022, arXiv 2203.16437, extended to a posterior over a family of target sets).

Modules: `pairs` (the pair dataset every part reads). Numpy and torch; of this project it imports `core` only.
Learner: `flows` (solution functions), `interventions` (target families, q(S)), `ilcm` (model, ELBO, loss).
"""
