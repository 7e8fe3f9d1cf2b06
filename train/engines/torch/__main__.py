"""``python -m train.engines.torch BUNDLE``: the PyTorch engine's process.

Started by the job's MXNet side (:mod:`train.engines.launch`) from the PyTorch environment. It
trains on every visible GPU, one rank process per GPU (or ``$OIC_CPU_CONTEXTS`` gloo ranks on
the CPU, a testing aid), and on every host of ``resourceconfig.json``; runs the shared driver;
and reports how it ended in ``BUNDLE/outcome.json`` for the parent, which writes
``output/failure`` and the exit code. SIGTERM stops every rank between batches.
"""

from __future__ import annotations

import sys

from train.engines.torch.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
