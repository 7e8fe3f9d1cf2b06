"""The PyTorch engine: the MXNet graph run by PyTorch, in its own process and environment."""
