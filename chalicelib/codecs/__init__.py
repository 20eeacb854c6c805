"""Tensor codecs: how tensors cross an edge, apart from any runner.

One module per encoding, shared by ``/predict``, ``/v2`` and batch jobs
(as Seldon MLServer keeps its codecs apart from its runtimes):

* :mod:`.spec` - a declared input or output (name, datatype, shape);
* :mod:`.json_tensors` - JSON bodies (orjson) and nested lists <-> numpy,
  the seed's output documents, the protocol's flat ``data`` arrays;
* :mod:`.npy` - stored ``.npy`` inputs, header checked before the body;
* :mod:`.binary` - Triton's binary tensor data extension (raw bytes
  after a JSON header, BYTES length-prefixed), decoded without copies;
* :mod:`.cast` - casting to a declared dtype without changing meaning,
  and shape checks against a declared shape;
* :mod:`.outputs` - counting what outputs would cost before encoding them.

numpy is imported inside functions: importing a codec never imports numpy.
"""
