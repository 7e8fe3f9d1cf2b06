"""``python -m train``: run a training job on the SageMaker directory layout."""

import sys

from train.main import run

if __name__ == "__main__":
    sys.exit(run())
