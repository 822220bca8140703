"""Reading people's pictures with a trained model: pictures decoded and framed (``images``),
numbers cut into digits (``reading``), the classifier and its answers (``predict``), the models
shipped with the package (``bundled``, ``weights/``), the record a model file carries
(``model_info``), and ONNX export and onnxruntime (``onnx_export``, ``onnx_runtime``).
"""
