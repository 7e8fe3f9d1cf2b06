"""The PyTorch engine. It runs in its own environment without MXNet or GluonCV: nothing under
this package may import them."""
