"""Where training images come from: one package for every input source.

File-mode channels (``.lst`` + images, class folders, ``.rec``) are read by :mod:`train.data`
and packed once by :mod:`train.records`. This package adds the sources that are not a folder of
files known in advance:

- :mod:`~train.inputs.channels`: what ``inputdataconfig.json`` says about each channel (File or
  Pipe mode, distribution, record wrapping, label format);
- :mod:`~train.inputs.recordio`: RecordIO framing of a byte stream, and telling an im2rec
  record from a bare image;
- :mod:`~train.inputs.pipe`: SageMaker's Pipe mode FIFOs (``<channel>_<n>``), waited for with a
  timeout and read once each;
- :mod:`~train.inputs.manifest`: augmented manifests (Ground Truth output), streamed as image
  then label records in Pipe mode or read from a ``.manifest`` file in File mode;
- :mod:`~train.inputs.stream`: a Pipe channel's pass as packed records (split between hosts),
  and validation read once into a local packed file;
- :mod:`~train.inputs.shards`: training batches from the stream through a shuffle buffer and a
  few bounded ``.rec`` shards on local scratch, read by File mode's C++ ``ImageRecordIter``;
- :mod:`~train.inputs.pipe_mode`: the built-in's rules for Pipe mode and each channel's source.

The one interface they share: every source ends as packed records (MXNet's ``IRHeader`` with
the labels, then the encoded image), so decoding, augmentation and normalisation are the same
code whatever the source.
"""
