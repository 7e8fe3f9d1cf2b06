"""The inference server: SageMaker's hosting contract over a trained model (``python -m serve``)."""
