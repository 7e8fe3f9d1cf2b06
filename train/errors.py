"""The two kinds of failure a training job can have, as the SageMaker contract separates them.

A :class:`ClientError` is the user's to fix (bad hyperparameters, bad data, missing channels);
anything else is an internal error of this product. The entry point writes both to
``output/failure``, with the short reason first because SageMaker shows only 1,024 characters.
"""


class ClientError(Exception):
    """A mistake in the user's input: the message says what is wrong and what to do."""


class TrainingInterrupted(Exception):
    """SIGTERM arrived (job stopped or spot capacity reclaimed); the last checkpoint is on disk."""
