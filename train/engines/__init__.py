"""Training engines: MXNet (the product's original trainer) and PyTorch (for GPUs MXNet 1.9.1
has no kernels for). Each runs behind the shared driver; nothing here is imported eagerly."""
