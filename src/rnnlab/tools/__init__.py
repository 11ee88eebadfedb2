"""Things built on a trained model or on the engines: ``bench`` (speed), ``visualize`` and ``attention_map``
(pages), ``plot`` (loss curves), ``export`` (a page, ONNX, safetensors), ``blas`` (which kernels NumPy runs).

Import rule (tests/test_architecture.py): anything in rnnlab except the CLI; nothing outside the CLI imports a
tool.
"""
