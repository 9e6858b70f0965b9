"""The top floor: what turns a command line into runs. `experiment` (`train.py`'s pipeline), `kinds` (one plug-in per
kind of model: how it is built, learns, saves and is evaluated), `registry` (algorithm names -> classes and kinds),
`hyperparams` (per-env defaults) and `sweep` (Ray Tune sweeps and Optuna searches of `train.py` runs)."""
