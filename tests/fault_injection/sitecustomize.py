"""Fault injection for the serving stack tests, imported at start-up by every Python process
that has this folder on ``PYTHONPATH`` (only the tests put it there).

While the file named by ``$OIC_TEST_FREEZE_FILE`` exists, the model's forward pass blocks in the
batching thread, as a deadlock inside MXNet's engine would, while the gunicorn worker itself
keeps running.
"""

import os

_FREEZE_FILE = os.environ.get("OIC_TEST_FREEZE_FILE")

if _FREEZE_FILE:
    import time

    from serve import predictor as _predictor

    _original_forward = _predictor.MXNetPredictor._forward

    def _frozen_forward(self, batch):
        while os.path.exists(_FREEZE_FILE):
            time.sleep(0.05)
        return _original_forward(self, batch)

    _predictor.MXNetPredictor._forward = _frozen_forward
