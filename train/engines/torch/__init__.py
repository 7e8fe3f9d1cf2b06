"""The PyTorch training engine: runs in its own venv and never imports MXNet or GluonCV."""
