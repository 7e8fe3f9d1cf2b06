"""The PyTorch training engine. Nothing under this package imports ``mxnet`` or ``gluoncv``: it runs
in its own venv, where they are not installed."""
