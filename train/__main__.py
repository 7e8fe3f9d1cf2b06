"""``python -m train``: run a training job on the SageMaker directory layout."""

import logging
import os
import sys

from train.main import run

if __name__ == "__main__":
    code = run()
    # Leave without running MXNet's finalizers: a multi-host (ps-lite) worker's KVStore waits at
    # a barrier for every peer when it is destroyed, which never ends if a peer already failed.
    # Every output file has been written atomically and closed by now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
