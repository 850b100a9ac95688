"""Build a tiny random-weight Llama model and tokenizer that vLLM can serve offline.

No model hub is needed: the tokenizer is a byte-level BPE trained on local text
(the standard library's own sources), the weights are random. The model's output
is meaningless text, but it is served by the real vLLM engine: the same API, the
same streaming, the same scheduler. Shapes follow what vLLM's CPU attention
supports (head_dim 64).

    python -m loadtest.tiny_llm OUT_DIR
"""

from __future__ import annotations

import argparse
import sysconfig
from collections.abc import Iterator
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def _training_text(max_files: int = 400) -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for index, path in enumerate(sorted(stdlib.glob("*.py"))):
        if index >= max_files:
            return
        yield path.read_text(encoding="utf-8", errors="ignore")


def build_tiny_llm(
    out_dir: Path,
    *,
    vocab_size: int = 2000,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int = 1,
    seed: int = 0,
) -> Path:
    """Write config, random weights and tokenizer into ``out_dir``; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write the model into")
    parser.add_argument(
        "--hidden-size", type=int, default=128, help="model width; heads are sized for head_dim 64 (default 128)"
    )
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    args = parser.parse_args(argv)
    build_tiny_llm(args.out_dir, hidden_size=args.hidden_size, layers=args.layers, heads=max(1, args.hidden_size // 64))
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
