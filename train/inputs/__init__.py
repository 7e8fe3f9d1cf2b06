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
- :mod:`~train.inputs.stream`: a Pipe channel as packed records, fed to the same C++
  ``ImageRecordIter`` as File mode through a few bounded ``.rec`` shards on local scratch.

The one interface they share: every source ends as packed records (MXNet's ``IRHeader`` with
the labels, then the encoded image), so decoding, augmentation and normalisation are the same
code whatever the source.
"""
