"""A run: the Trainer and its loop, what it learns (tasks), its settings (config), who computes a step
(engines, parallel threads, distributed processes), its checkpoints and their schema, the health guard.

Import rule (tests/test_architecture.py): ``rnnlab.training``, ``rnnlab.nn``, ``rnnlab.data``,
``rnnlab.generate``, the edges (``errors``, ``files``, ``schema``, ``memory``) and ``rnnlab.frameworks`` (the
engine registry loads a framework engine when a run asks for one) -- never tools or the CLI.
"""
