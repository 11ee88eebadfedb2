"""batches.py: padding with masks, line batches (shuffled per epoch) and stream batches (carried state)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.data.batches import LineBatches, StreamBatches, pad_sequences
from rnnlab.errors import RnnlabError


def make_line_examples(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """n examples of lengths 1..7 whose first input id is the example's own index (so a batch can be traced).

    targets = inputs + 1000, so the two are told apart and a padded target (0) never looks like a real one.
    """
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        length = int(rng.integers(1, 8))
        ids = np.concatenate([[i], rng.integers(0, 50, size=length - 1)]).astype(np.int64)
        examples.append((ids, ids + 1000))
    return examples


def example_indices(batch) -> list[int]:
    """The index of every example in a line batch (its first input id)."""
    return batch.ids[0].tolist()


# --- pad_sequences -------------------------------------------------------------------------------------


def test_pad_sequences_shapes_values_and_mask():
    """Sequences become (T_max, B) int64 ids, time first, padded with pad_value; the float mask marks real ids."""
    seqs = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6])]
    ids, mask = pad_sequences(seqs, pad_value=-1)
    assert ids.shape == mask.shape == (3, 3)
    assert ids.dtype == np.int64 and mask.dtype == np.float64
    np.testing.assert_array_equal(ids, [[1, 4, 5], [2, -1, 6], [3, -1, -1]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 1], [1, 0, 0]])


def test_pad_sequences_mask_sums_to_lengths():
    """Each column of the mask sums to that sequence's length and is 1 exactly on its first len(seq) steps."""
    lengths = [5, 1, 3, 5, 2]
    ids, mask = pad_sequences([np.arange(n) + 1 for n in lengths])
    assert ids.shape == (5, 5)
    np.testing.assert_array_equal(mask.sum(axis=0), lengths)
    for b, n in enumerate(lengths):
        assert (mask[:n, b] == 1).all() and (mask[n:, b] == 0).all()
        assert (ids[n:, b] == 0).all()  # default pad value


# --- LineBatches ---------------------------------------------------------------------------------------


def test_line_batches_mask_covers_exactly_the_real_positions():
    """In every batch the mask is 1 where an example has a character and 0 on its padding."""
    examples = make_line_examples(23)
    batches = LineBatches(examples, batch_size=4, rng=np.random.default_rng(0))
    for _ in range(6):
        batch = next(batches)
        assert batch.ids.shape == batch.targets.shape
        mask = np.ones(batch.ids.shape) if batch.mask is None else batch.mask
        for b, i in enumerate(example_indices(batch)):
            ids, targets = examples[i]
            n = len(ids)
            np.testing.assert_array_equal(batch.ids[:n, b], ids)
            np.testing.assert_array_equal(batch.targets[:n, b], targets)
            assert (mask[:n, b] == 1).all() and (mask[n:, b] == 0).all()
        assert batch.n_tokens == sum(len(examples[i][0]) for i in example_indices(batch))
        assert batch.reset_state  # every line batch starts from a zero state


def test_line_batches_mask_is_none_when_nothing_is_padded():
    """Equal-length examples need no mask (None), and n_tokens counts every position."""
    examples = [(np.array([i, 1, 2]), np.array([1, 2, 3])) for i in range(4)]
    batch = next(LineBatches(examples, batch_size=4, rng=np.random.default_rng(0)))
    assert batch.mask is None
    assert batch.n_tokens == 12


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (7, 1), (5, 5), (3, 8)])
def test_line_batches_every_example_once_per_epoch(n, batch_size):
    """Within one epoch every example appears exactly once, including a short last batch."""
    batches = LineBatches(make_line_examples(n), batch_size, np.random.default_rng(0))
    for epoch in range(3):
        seen = []
        while len(seen) < n:
            batch = next(batches)
            assert batch.epoch == epoch
            seen += example_indices(batch)
        assert sorted(seen) == list(range(n))


def test_line_batches_epoch_increments_after_the_last_batch():
    """Batch epochs go 0, 0, ..., 1, 1, ..., 2: the counter steps once all examples have been served."""
    batches = LineBatches(make_line_examples(10), batch_size=4, rng=np.random.default_rng(0))
    epochs = [next(batches).epoch for _ in range(9)]  # 3 batches per epoch: 4 + 4 + 2
    assert epochs == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def epoch_orders(batches: LineBatches, n: int, epochs: int) -> list[list[int]]:
    orders = []
    for _ in range(epochs):
        order = []
        while len(order) < n:
            order += example_indices(next(batches))
        orders.append(order)
    return orders


def test_line_batches_same_seed_gives_same_order():
    """Two iterators built with Generators of the same seed serve the same order, epoch after epoch,
    whatever the global NumPy RNG does in between."""
    examples = make_line_examples(20)
    np.random.seed(0)
    a = epoch_orders(LineBatches(examples, 3, np.random.default_rng(42)), 20, 4)
    np.random.seed(99)
    np.random.random(100)
    b = epoch_orders(LineBatches(examples, 3, np.random.default_rng(42)), 20, 4)
    assert a == b


def test_line_batches_reshuffle_every_epoch_with_the_passed_generator():
    """Each epoch is a fresh permutation drawn from the Generator passed in: orders differ between epochs
    and between seeds, and they are exactly that Generator's successive permutations."""
    examples = make_line_examples(20)
    orders = epoch_orders(LineBatches(examples, 3, np.random.default_rng(42)), 20, 3)
    assert len({tuple(order) for order in orders}) == 3
    other_seed = epoch_orders(LineBatches(examples, 3, np.random.default_rng(43)), 20, 3)
    assert orders != other_seed
    reference = np.random.default_rng(42)
    assert orders == [reference.permutation(20).tolist() for _ in range(3)]


def test_line_batches_without_shuffle_keep_file_order():
    """shuffle=False serves the examples in their given order every epoch and leaves the Generator alone."""
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    batches = LineBatches(make_line_examples(7), 3, rng, shuffle=False)
    assert epoch_orders(batches, 7, 2) == [list(range(7))] * 2
    assert rng.bit_generator.state == before


def test_line_batches_state_dict_resumes_within_an_epoch():
    """Restoring state_dict() into a fresh iterator serves the same remaining batches of the epoch."""
    examples = make_line_examples(25)
    original = LineBatches(examples, 4, np.random.default_rng(7))
    for _ in range(3):
        next(original)
    restored = LineBatches(examples, 4, np.random.default_rng(7))
    restored.load_state_dict(original.state_dict())
    for _ in range(4):  # stays inside epoch 0 (7 batches per epoch)
        a, b = next(original), next(restored)
        assert a.epoch == b.epoch == 0
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_line_batches_state_dict_is_plain_data():
    """state_dict() holds only plain Python values (a JSON/npz checkpoint can store it)."""
    import json

    batches = LineBatches(make_line_examples(5), 2, np.random.default_rng(0))
    next(batches)
    json.dumps(batches.state_dict())


def test_line_batches_state_dict_resumes_across_epochs():
    """A checkpoint taken in a later epoch, restored into an iterator built the way a resumed run builds it
    (a fresh Generator from the same seed), continues identically through the next reshuffles.

    This needs the data Generator's state to be part of the saved state: otherwise the resumed run replays
    the fresh Generator's permutations instead of the ones the original run would draw next.
    """
    examples = make_line_examples(10)
    original = LineBatches(examples, 4, np.random.default_rng(7))
    for _ in range(5):  # 3 batches per epoch: now in the middle of epoch 1
        next(original)
    state = original.state_dict()
    restored = LineBatches(examples, 4, np.random.default_rng(7))
    restored.load_state_dict(state)
    for _ in range(9):  # through epochs 2 and 3
        a, b = next(original), next(restored)
        assert a.epoch == b.epoch
        np.testing.assert_array_equal(a.ids, b.ids)


def test_line_batches_reject_bad_arguments():
    """No examples, or batch_size <= 0, raise RnnlabError with a message saying what to change."""
    with pytest.raises(RnnlabError, match="no examples"):
        LineBatches([], 2, np.random.default_rng(0))
    with pytest.raises(RnnlabError, match="batch_size"):
        LineBatches(make_line_examples(3), 0, np.random.default_rng(0))


# --- StreamBatches -------------------------------------------------------------------------------------


def test_stream_batches_cut_text_into_b_contiguous_streams():
    """Concatenating one epoch's windows of column b gives a contiguous slice of the text: stream b starts
    at b * (len(text) - 1) // B."""
    data = np.arange(103)
    B, T = 4, 5
    batches = StreamBatches(data, batch_size=B, seq_length=T)
    stream_len = (len(data) - 1) // B  # 25 characters per stream, 5 windows of 5
    windows = [next(batches) for _ in range(stream_len // T)]
    for batch in windows:
        assert batch.ids.shape == batch.targets.shape == (T, B)
        assert batch.mask is None
        assert batch.n_tokens == T * B
    inputs = np.concatenate([w.ids for w in windows])  # (stream_len, B)
    for b in range(B):
        np.testing.assert_array_equal(inputs[:, b], data[b * stream_len:(b + 1) * stream_len])


def test_stream_batch_targets_are_inputs_shifted_by_one():
    """targets[t, b] is the character right after ids[t, b] in the text.

    A second iterator over the positions 0..n-1 says where each entry came from in the text.
    """
    data = np.random.default_rng(0).integers(0, 30, size=200)
    batches = StreamBatches(data, batch_size=3, seq_length=7)
    positions = StreamBatches(np.arange(200), batch_size=3, seq_length=7)
    for _ in range(12):  # more than one epoch (66 // 7 = 9 windows per epoch)
        batch, where = next(batches), next(positions)
        np.testing.assert_array_equal(where.targets, where.ids + 1)
        np.testing.assert_array_equal(batch.ids, data[where.ids])
        np.testing.assert_array_equal(batch.targets, data[where.ids + 1])


def test_stream_consecutive_windows_continue_each_stream():
    """Window k+1 of stream b starts right after window k ends, so the carried hidden state is the right one."""
    data = np.arange(1000)
    batches = StreamBatches(data, batch_size=5, seq_length=9)
    previous = next(batches)
    while True:
        batch = next(batches)
        if batch.reset_state:
            break
        np.testing.assert_array_equal(batch.ids[0], previous.ids[-1] + 1)
        np.testing.assert_array_equal(batch.ids[1:], batch.ids[:-1] + 1)
        previous = batch


def test_stream_reset_state_only_at_the_start_of_each_epoch():
    """reset_state is True on the first window of every epoch and False elsewhere; the epoch then steps."""
    data = np.arange(101)  # 4 streams of 25 -> 3 windows of 8 per epoch (the last 1 character is unused)
    batches = StreamBatches(data, batch_size=4, seq_length=8)
    got = [(b.reset_state, b.epoch) for b in (next(batches) for _ in range(7))]
    assert got == [(True, 0), (False, 0), (False, 0), (True, 1), (False, 1), (False, 1), (True, 2)]


def test_stream_each_epoch_replays_the_same_windows():
    """A stream epoch starts again from the beginning of every stream (no shuffling of continuous text)."""
    batches = StreamBatches(np.arange(101), batch_size=4, seq_length=8)
    first = [next(batches).ids for _ in range(3)]
    second = [next(batches).ids for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_stream_state_dict_resumes_identically():
    """Restoring state_dict() into a fresh iterator continues with the same windows, epochs and resets."""
    data = np.arange(301)
    original = StreamBatches(data, batch_size=3, seq_length=7)
    for _ in range(17):
        next(original)
    restored = StreamBatches(data, batch_size=3, seq_length=7)
    restored.load_state_dict(original.state_dict())
    for _ in range(30):
        a, b = next(original), next(restored)
        assert (a.epoch, a.reset_state) == (b.epoch, b.reset_state)
        np.testing.assert_array_equal(a.ids, b.ids)


@pytest.mark.parametrize("length, batch_size, seq_length", [(10, 1, 10), (30, 1, 1000), (40, 4, 10), (1, 1, 1)])
def test_stream_too_short_text_raises(length, batch_size, seq_length):
    """A text shorter than seq_length * batch_size + 1 raises RnnlabError stating the need and the fix."""
    with pytest.raises(RnnlabError) as excinfo:
        StreamBatches(np.arange(length), batch_size=batch_size, seq_length=seq_length)
    message = str(excinfo.value)
    assert f"at least {seq_length * batch_size + 1} characters" in message
    assert f"has {length}" in message
    assert "smaller --seq_length" in message


def test_stream_shortest_valid_text_gives_one_window():
    """Exactly seq_length * batch_size + 1 characters is enough: one window per epoch."""
    batches = StreamBatches(np.arange(21), batch_size=2, seq_length=10)
    first, second = next(batches), next(batches)
    assert first.reset_state and second.reset_state
    assert (first.epoch, second.epoch) == (0, 1)
    np.testing.assert_array_equal(first.ids[:, 1], np.arange(10, 20))
    np.testing.assert_array_equal(first.targets[:, 1], np.arange(11, 21))


@pytest.mark.parametrize("batch_size, seq_length", [(0, 5), (2, 0), (-1, 5)])
def test_stream_rejects_non_positive_sizes(batch_size, seq_length):
    """batch_size or seq_length <= 0 raise RnnlabError naming the flag."""
    with pytest.raises(RnnlabError, match="must be > 0"):
        StreamBatches(np.arange(100), batch_size=batch_size, seq_length=seq_length)
