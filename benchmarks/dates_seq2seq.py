"""How fast does a seq2seq translator learn the shipped dates? Exact-match accuracy against training time.

    python benchmarks/dates_seq2seq.py                                  # bi-GRU 64 -> GRU 128, additive
    python benchmarks/dates_seq2seq.py --attention none --budget 300     # the classic encoder-decoder

Trains with Seq2SeqEngine (Adam, clip-norm 5, batch 64, float32) for ``--budget`` seconds of training steps
and, every ``--every`` steps, reports the validation loss (teacher forced) and the greedy exact-match
accuracy on the validation split (evaluation time is not counted in the training time). At the end it
reports the test split's exact match (greedy and beam 4) and the time ``translate`` takes for 1,000 test
inputs (greedy and beam 4).
One line of JSON per report with ``--json``. This is the library-level measurement; the CLI run
(``rnnlab train --dataset dates``) will add checkpoints and reports around the same steps.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rnnlab.data.pairs import PairBatches, PairTokenizers, load_pairs, pair_eval_batches
from rnnlab.generate.translate import exact_match, translate
from rnnlab.nn import seq2seq as s2s
from rnnlab.nn.optim import Adam
from rnnlab.training.engines import Seq2SeqEngine
from rnnlab.training.trainer import TrainConfig, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attention", default="additive", choices=s2s.ATTENTION_KINDS)
    parser.add_argument("--encoder_cell", default="gru")
    parser.add_argument("--decoder_cell", default="gru")
    parser.add_argument("--encoder_hidden", type=int, default=64)
    parser.add_argument("--decoder_hidden", type=int, default=128)
    parser.add_argument("--attention_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training steps")
    parser.add_argument("--every", type=int, default=100, help="steps between reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = load_pairs("dates")
    tokenizers = PairTokenizers.fit(data.train + data.valid + data.test)
    config = s2s.Seq2SeqConfig(tokenizers.source.vocab_size, tokenizers.target.vocab_size, args.encoder_cell,
                               args.encoder_hidden, args.decoder_cell, args.decoder_hidden, args.attention,
                               args.attention_size, max_output_length=12)
    init_seed, data_seed = np.random.SeedSequence(args.seed).spawn(2)
    params = s2s.init_params(config, np.random.default_rng(init_seed), np.float32)
    engine = Seq2SeqEngine(config, params, Adam(lr=args.learning_rate), TrainConfig(clip_value=None, clip_norm=5.0),
                           None)
    batches = PairBatches([tokenizers.encode_pair(p) for p in data.train], args.batch_size,
                          np.random.default_rng(data_seed))
    val_batches = pair_eval_batches([tokenizers.encode_pair(p) for p in data.valid])

    def report(record):
        print(json.dumps(record) if args.json else "  ".join(f"{k} {v}" for k, v in record.items()), flush=True)

    report({"config": config.to_dict(), "train_pairs": len(data.train), "valid_pairs": len(data.valid)})
    step, train_s = 0, 0.0
    while train_s < args.budget:
        start = time.perf_counter()
        for _ in range(args.every):
            loss, _ = engine.train_step(next(batches), None)
            step += 1
        train_s += time.perf_counter() - start
        report({"step": step, "epoch": batches.epoch, "train_s": round(train_s, 1), "loss": round(loss, 5),
                "val_loss": round(evaluate(engine, val_batches), 5),
                "val_exact": exact_match(engine.params, config, tokenizers, data.valid)})
    timings = {}
    for beam_size in (1, 4):
        start = time.perf_counter()
        translate(engine.params, config, tokenizers, [source for source, _ in data.test[:1000]], beam_size=beam_size)
        timings[f"translate_1000_beam{beam_size}_s"] = round(time.perf_counter() - start, 3)
    report({"test_exact": exact_match(engine.params, config, tokenizers, data.test),
            "test_exact_beam4": exact_match(engine.params, config, tokenizers, data.test, beam_size=4),
            **timings, "steps": step, "train_s": round(train_s, 1)})


if __name__ == "__main__":
    main()
