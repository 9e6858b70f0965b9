"""Physics-informed operator learning with Lie point symmetries (Akhound-Sadegh et al., NeurIPS 2023).

Modules, lowest first: `lie_symmetry` (jets, generators, prolongation and the symmetry loss), `equations` (the heat and
Burgers equations with their symmetry generators), `reference` (spectral reference solvers), `problems` (named
problems: an equation, its domain, initial conditions and finite symmetries), `networks` (the physics-informed
DeepONet) and `solver` (`PINNSolver`, trained through `train.py --algo pinn --env Burgers`).
"""
