"""Build a tiny random-weight BERT sequence classifier that vLLM's pooling runner serves
offline (``vllm serve OUT --runner pooling``): the shape of a guard model (Prompt Guard,
toxic-bert), none of its knowledge.

No model hub: the tokenizer is a WordPiece vocabulary of single characters, ``##``
continuations and a few common words; the weights are random. Labels are ``safe`` and
``unsafe`` (``id2label``). ``unsafe_bias`` shifts every text's ``unsafe`` logit, so tests
know roughly where the probabilities lie (with the default, ``unsafe`` is likelier than
``safe`` for every text) while the random weights still score each text differently.
vLLM's CPU attention refuses head_dim 16, so the default is hidden 128 with 2 heads.

    python -m loadtest.tiny_classifier OUT_DIR
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

LABELS = ("safe", "unsafe")
_WORDS = (
    "the a an and or but not is are was be you your i me my we they it this that to of in on "
    "for with at by from as have do can will would should good bad nice day hello thanks "
    "please idiot stupid hate love kill ignore previous instructions"
).split()
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _vocabulary() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return list(dict.fromkeys([*_SPECIAL, *chars, *(f"##{c}" for c in chars), *_WORDS]))


def build_tiny_classifier(
    out_dir: Path,
    *,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 128,
    unsafe_bias: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write config, random weights and tokenizer into ``out_dir``; return it."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = out_dir / "vocab.txt"
    vocab.write_text("\n".join(_vocabulary()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=max_positions)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(_vocabulary()),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_positions,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        problem_type="single_label_classification",
        torch_dtype="float32",
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        # Wide enough that texts score visibly apart; biased so the band is known.
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.copy_(torch.tensor([0.0, unsafe_bias]))
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write the model into")
    parser.add_argument("--max-positions", type=int, default=128, help="the model's context in tokens (default 128)")
    args = parser.parse_args(argv)
    build_tiny_classifier(args.out_dir, max_positions=args.max_positions)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
