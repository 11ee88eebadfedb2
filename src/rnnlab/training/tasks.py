"""What a run learns: a character language model over a corpus, or a translator over pairs.

The :class:`~rnnlab.train.Trainer` is the same for both -- the loop, the optimizers, clipping, the schedule,
reports, checkpoints and exact resume -- and asks its *task* for what differs:

=======================  ====================================  ============================================
                         ``lm`` (LanguageModelTask)            ``translate`` (TranslationTask)
=======================  ====================================  ============================================
data (``--data_mode``)   lines, stream (corpus.py, splits.py)  pairs: ``source<TAB>target`` (pairs.py)
model                    ``model.ModelConfig``, a cell stack   ``seq2seq.Seq2SeqConfig``, encoder-decoder
tokenizer                one ``CharTokenizer``                 ``pairs.PairTokenizers`` (source, target)
engine                   ``--engine`` (numpy, torch, keras)    ``Seq2SeqEngine`` (NumPy)
samples in a report      names or a text                       a few validation sources, translated
extra validation         --                                    exact-match accuracy (and test accuracy at the end)
=======================  ====================================  ============================================

A checkpoint records its task (``"task"``); what the checkpoint reader needs to check and rebuild that
task's model config and tokenizer is the task's *kind* (``kinds.py``), on which each task here is built.
"""

from __future__ import annotations

import numpy as np

from ..data.corpus import load_corpus
from ..data.pairs import PairBatches, PairTokenizers, load_pairs, pair_eval_batches, uses_pairs
from ..data.splits import TrainData, build_data, val_fraction
from ..errors import require
from ..generate.sampling import sample
from ..generate.translate import exact_match, translate
from ..nn import model as charmodel
from ..nn import seq2seq as s2s
from .engines import Seq2SeqEngine, engine_class
from .kinds import LanguageModelKind, TranslatorKind


def make_task(config, on_load=None, verify: bool = False):
    """The task ``config`` describes: a translator for pairs data, else a language model. ``verify``: read
    the corpus as it is now, not as the cache remembers it (a resumed run)."""
    if uses_pairs(config.dataset, config.data_mode):
        return TranslationTask(config)
    return LanguageModelTask(config, on_load, verify)


class LanguageModelTask(LanguageModelKind):
    """A character language model over a ``lines`` or ``stream`` corpus."""

    def __init__(self, config, on_load=None, verify: bool = False):
        require(config.data_mode != "pairs", "--data_mode pairs trains a translator")
        self.corpus = load_corpus(config.dataset, config.data_mode, config.cache_dir, on_load, verify)
        self.tokenizer = self.corpus.tokenizer
        self.name, self.mode, self.chars = self.corpus.name, self.corpus.mode, len(self.corpus)

    def model_config(self, config) -> charmodel.ModelConfig:
        return charmodel.ModelConfig(vocab_size=self.tokenizer.vocab_size, cell=config.cell,
                                     hidden_size=config.hidden_size, num_layers=config.num_layers,
                                     dropout=config.dropout, block=config.block, norm=config.norm,
                                     ffn_mult=config.ffn_mult,
                                     **{name: getattr(config, name) for name in config.model.REGULARIZERS})

    def data(self, config, rng: np.random.Generator) -> TrainData:
        return build_data(self.corpus, config, rng)

    def init_params(self, model_config, rng, dtype, config) -> dict:
        return charmodel.init_params(model_config, rng, dtype, config.init, config.forget_bias)

    @staticmethod
    def engine_class(name: str):
        return engine_class(name)

    def fingerprint(self) -> dict:
        return self.corpus.fingerprint()

    def samples(self, params, model_config, rng, config) -> list[str]:
        """``num_samples`` names (at most 100 characters each) for a lines corpus, else one text."""
        names = self.mode == "lines"
        count, length = (config.num_samples, 100) if names else (1, config.sample_length)
        return [sample(params, model_config, self.tokenizer, rng, length=length, temperature=config.temperature,
                       stop_at_newline=names) for _ in range(count)]

    def accuracy(self, params, model_config, final: bool) -> dict:
        return {}


class TranslationTask(TranslatorKind):
    """A sequence-to-sequence translator (seq2seq.py) over ``source<TAB>target`` pairs (pairs.py)."""
    # pairs that count for the validation accuracy in a report (all of the shipped dates' 2,000): decoding
    # is batched, about 0.3 s per 1,000 pairs
    ACCURACY_PAIRS = 5000

    def __init__(self, config):
        require(config.engine == "numpy", f"--engine {config.engine}: the translator runs on the NumPy engine "
                                          "only (--engine numpy)")
        require(config.block == "plain", "--block residual is for language models; the translator is an "
                                         "encoder-decoder of its own (leave --block plain)")
        given = config.model.regularizers_on()
        require(not given, f"{', '.join('--' + name for name in given)}: the regularisers of language models; the "
                           "translator (an encoder-decoder, nn/seq2seq.py) has none of them: leave them off")
        fraction = val_fraction(config.val_fraction)
        self.pairs = load_pairs(config.dataset, fraction, test_fraction=fraction)
        self.tokenizer = PairTokenizers.fit(self.pairs.train + self.pairs.valid + self.pairs.test)
        self.name, self.mode = self.pairs.name, "pairs"
        self.chars = self.fingerprint()["chars"]

    def model_config(self, config) -> s2s.Seq2SeqConfig:
        longest = max(len(t) for _, t in self.pairs.train + self.pairs.valid + self.pairs.test)
        return s2s.Seq2SeqConfig(
            self.tokenizer.source.vocab_size, self.tokenizer.target.vocab_size, encoder_cell=config.cell,
            encoder_hidden=config.encoder_hidden or max(1, config.hidden_size // 2), decoder_cell=config.cell,
            decoder_hidden=config.hidden_size, attention=config.attention, attention_size=config.attention_size,
            max_output_length=config.max_output_length or longest + 4)

    def data(self, config, rng: np.random.Generator) -> TrainData:
        encode = self.tokenizer.encode_pair
        train = [encode(pair) for pair in self.pairs.train]
        valid = [encode(pair) for pair in self.pairs.valid]
        if config.eval_tokens is not None:                      # the first pairs that fit the budget
            lengths = np.cumsum([len(target[1]) for _, target in valid])
            valid = valid[:max(1, int(np.searchsorted(lengths, config.eval_tokens, side="right")))]
        batches = PairBatches(train, config.batch_size, rng, shuffle=not config.deterministic)
        val_batches = pair_eval_batches(valid) if valid else None
        longest = max(max(len(s), len(t[0])) for s, t in train)
        return TrainData(batches, val_batches, sum(len(t[1]) for _, t in valid),
                         -(-len(train) // batches.batch_size), longest, [])

    def init_params(self, model_config, rng, dtype, config) -> dict:
        require(config.init == "rnnlab" and config.forget_bias is None,
                "--init and --forget_bias apply to language models; the translator has its own initialisation")
        return s2s.init_params(model_config, rng, dtype)

    @staticmethod
    def engine_class(name: str):
        return Seq2SeqEngine

    def fingerprint(self) -> dict:
        return self.pairs.fingerprint()

    def samples(self, params, model_config, rng, config) -> list[str]:
        """The first ``num_samples`` validation sources, translated greedily, each marked right or wrong."""
        chosen = self.pairs.valid[:config.num_samples]
        results = translate(params, model_config, self.tokenizer, [source for source, _ in chosen])
        return [f"{t.source} -> {t.output}  {'ok' if t.output == target else 'expected ' + target}"
                for t, (_, target) in zip(results, chosen, strict=True)]

    def accuracy(self, params, model_config, final: bool) -> dict:
        """Exact-match accuracy (greedy) on the validation pairs; at the end of a run also on the test pairs."""
        found = {"val_accuracy": exact_match(params, model_config, self.tokenizer,
                                             self.pairs.valid[:self.ACCURACY_PAIRS])}
        if final and self.pairs.test:
            found["test_accuracy"] = exact_match(params, model_config, self.tokenizer, self.pairs.test)
        return found


TASKS = {task.kind: task for task in (LanguageModelTask, TranslationTask)}
