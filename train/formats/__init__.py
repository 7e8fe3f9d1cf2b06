"""Model formats: everything that knows how a saved model is laid out and what it expects.

One family, shared by the trainer and the server:

- :mod:`~train.formats.metadata`: the versioned ``model-metadata.json`` record (input convention).
- :mod:`~train.formats.convention`: the one rule that decides a model's input convention.
- :mod:`~train.formats.symbolic`: MXNet symbolic graphs (this product's exports, the built-in
  algorithm's models, MXNet checkpoints): classifier cut, served outputs, first layer.
- :mod:`~train.formats.model_dir`: this product's / the built-in's model directory: export,
  incremental-training seed, inference.
- :mod:`~train.formats.mxnet_checkpoint`: an MXNet symbolic checkpoint (``*-symbol.json`` +
  ``*-NNNN.params``) in the ``pretrained`` channel, such as the MXNet model zoo's ResNets.
- :mod:`~train.formats.onnx`: ``model.onnx``, the same model for ONNX Runtime (export, the
  conversion command, the server's load-time conversion).
"""
