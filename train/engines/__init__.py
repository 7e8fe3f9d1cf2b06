"""Training engines: MXNet's (today's code) and PyTorch's (:mod:`train.engines.torch`), which
runs in its own process and virtual environment, without MXNet."""
