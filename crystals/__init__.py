"""Crystal generation of SymmCD (Levy et al., ICLR 2025, arXiv 2502.03638) and its baseline DiffCSP (Jiao et al.,
NeurIPS 2023, arXiv 2309.04475): the CDVAE-style datasets, the asymmetric-unit representation and the diffusion
processes.

Modules: `data` (registered datasets, CSV reading), `site_symmetry` (15 x 13 site-symmetry labels, the 397-number
space-group condition), `groups` (space groups in the ITA setting, Wyckoff positions, projection onto them),
`lattice` (the DiffCSP++ lattice k and crystal-family masks), `asu` (crystal -> asymmetric unit), `decode`
(asymmetric unit -> crystal, failing loudly), `processed` (preprocessed splits, cached), `diffusion` (schedules,
lattice DDPM, wrapped normal on the torus, D3PM), `fingerprints` (CDVAE's CrystalNN and Magpie fingerprints),
`metrics` (validity, coverage, distribution distances and symmetry metrics of generated crystals, test-set features
cached), `models` (DiffCSP and SymmCD on `core.trainer.Trainer`) and `evaluate` (samples written as CIFs, read back
and evaluated: ``python -m crystals.evaluate RUN_DIR``). Numpy, torch, pymatgen, spglib and pyxtal's Wyckoff tables;
smact and matminer for the metrics; of this project it imports `core` only.
"""
