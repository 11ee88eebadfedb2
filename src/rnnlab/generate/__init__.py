"""Using a trained model: temperature / top-k sampling, beam search, and the translator's decoding.

Import rule (tests/test_architecture.py): ``rnnlab.generate``, ``rnnlab.nn``, ``rnnlab.data`` and the edges
(``errors``, ``memory``) -- nothing of training, tools, frameworks or the CLI. (Sampling on a GPU takes a
``forward`` function from its caller: the framework is never imported here.)
"""
