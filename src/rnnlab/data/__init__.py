"""Text in, batches out: the tokenizer, reading any corpus (and its cache), padded line batches and
truncated-BPTT windows, the validation split and its budget, pairs for the translator.

Import rule (tests/test_architecture.py): ``rnnlab.data``, ``rnnlab.nn`` (for types), and the edges
(``errors``, ``files``, ``schema``, ``memory``) -- nothing of training, generation, tools, frameworks or the
CLI. The shipped texts themselves are not code: they live in ``rnnlab/corpora``.
"""
