"""Builds Detoxify checkpoints with random weights, loadable with no model hub.

Detoxify's released weights come from GitHub at run time, which machines without
internet cannot reach. A random BERT of the same shape costs what the real model
costs (same FLOPs), so it serves two purposes: the tiny preset makes the real
Detoxify loader testable in milliseconds, the bert-base preset makes the monitor
benchmarkable at its true price. Scores are meaningless; shapes and cost are real.

    python -m loadtest.tiny_detoxify OUT [--bert-base]

prints the two paths to put in the monitor config (``checkpoint:`` and ``config_path:``).
"""

from __future__ import annotations

import argparse
import string
from dataclasses import dataclass
from pathlib import Path

# The Jigsaw Toxic Comment classes of Detoxify's "original" model, in its order.
JIGSAW_CLASSES = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")

# A few whole words so ordinary English does not tokenise to [UNK] only; the rest of
# any text falls back to the single characters and "##" continuations below.
_COMMON_WORDS = (
    "the a an and or but not is are was were be you your i me my we our they them "
    "he she it this that to of in on for with at by from as have has do does can will "
    "would should good bad nice day hello thanks please idiot stupid hate love kill"
).split()
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MAX_POSITIONS = 512


@dataclass(frozen=True)
class BertShape:
    hidden_size: int
    layers: int
    heads: int
    intermediate: int


TINY = BertShape(hidden_size=32, layers=2, heads=2, intermediate=64)
BERT_BASE = BertShape(hidden_size=768, layers=12, heads=12, intermediate=3072)


def _vocabulary() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    # Every entry once: a duplicate makes the file longer than the tokenizer's vocabulary,
    # and the ids past it crash the embedding lookup.
    return list(dict.fromkeys([*_SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars), *_COMMON_WORDS]))


def build_detoxify_checkpoint(
    out_dir: Path,
    *,
    hidden_size: int = TINY.hidden_size,
    layers: int = TINY.layers,
    heads: int = TINY.heads,
    intermediate: int = TINY.intermediate,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a random BERT Detoxify checkpoint; return ``(checkpoint_path, config_dir)``.

    Load it with ``Detoxify(checkpoint=str(checkpoint_path),
    huggingface_config_path=str(config_dir))``.
    """
    # Imported here: torch and transformers take seconds to import and are optional extras.
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    out_dir = Path(out_dir).resolve()
    config_dir = out_dir / "hf-config"
    config_dir.mkdir(parents=True, exist_ok=True)

    vocab_file = config_dir / "vocab.txt"
    vocab_file.write_text("\n".join(_vocabulary()) + "\n", encoding="utf-8")
    # model_max_length makes Detoxify's truncation=True cut long texts at the position limit
    # instead of crashing the position embeddings.
    tokenizer = BertTokenizer(vocab=str(vocab_file), model_max_length=_MAX_POSITIONS)
    tokenizer.save_pretrained(str(config_dir))

    config = BertConfig(
        vocab_size=len(_vocabulary()),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=_MAX_POSITIONS,
        num_labels=len(JIGSAW_CLASSES),
    )
    config.save_pretrained(str(config_dir))

    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    checkpoint_path = out_dir / "detoxify.ckpt"
    torch.save(
        {
            # Detoxify reads the model class and config location from here. model_type is
            # the absolute config dir because Detoxify loads a config from it even when
            # huggingface_config_path is given, and a hub name would need the network.
            "config": {
                "arch": {
                    "args": {
                        "model_type": str(config_dir),
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(JIGSAW_CLASSES),
                    }
                },
                "dataset": {"args": {"classes": list(JIGSAW_CLASSES)}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint_path,
    )
    return checkpoint_path, config_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.tiny_detoxify",
        description="Build a random-weight Detoxify checkpoint that loads offline.",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument(
        "--bert-base",
        action="store_true",
        help="bert-base shape (768 wide, 12 layers): the real model's cost, for benchmarks",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = BERT_BASE if args.bert_base else TINY
    checkpoint, config_dir = build_detoxify_checkpoint(
        args.out,
        hidden_size=shape.hidden_size,
        layers=shape.layers,
        heads=shape.heads,
        intermediate=shape.intermediate,
        seed=args.seed,
    )
    print(f"checkpoint: {checkpoint}")
    print(f"config_path: {config_dir}")


if __name__ == "__main__":
    main()
