"""The math a learner comes for: every piece of a recurrent net with its equation and its derivative.

activations, losses, output (the softmax layer and the projection of the logit gradient onto the hidden
state), cells (RNN, LSTM, GRU, with textbook reference steps beside the fused ones), recurrence (the one
sequence loop and its BPTT), model (the stack and ``loss_and_grads``), initializers, optim (the update rules
and their explicit state), attention, bidirectional, seq2seq, gradcheck.

Import rule (tests/test_architecture.py): a module here imports NumPy, the standard library, other modules of
``rnnlab.nn`` and ``rnnlab.errors`` -- nothing of data, training, generation, tools, frameworks or the CLI.
"""
