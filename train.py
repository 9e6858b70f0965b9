"""Train any registered algorithm on any registered environment: `python train.py --algo sac --env HalfCheetah`.

Runs are written to runs/<algo>/<env>__seed<seed>__<time>/ (TensorBoard events, config.yaml, model.zip, checkpoints).
`python train.py --help` lists every flag; `python train.py --list` lists algorithms and environments.
"""

import tyro

from runner.args import TrainArgs
from runner.experiment import main

if __name__ == "__main__":
    main(tyro.cli(TrainArgs))
