"""Build the two tiny, randomly initialised models that the CPU vLLM stack serves.

Production serves Qwen/Qwen2.5-VL-7B-Instruct and openai/gpt-oss-120b on GPUs. Neither fits here and
nothing can be downloaded, so this script makes architecture-identical miniatures offline:

* ``qwen2_5_vl``: ``Qwen2_5_VLForConditionalGeneration`` (~0.7 M parameters) with a byte-level BPE
  tokenizer trained on a built-in text, Qwen's 14 special tokens, Qwen2-VL's chat template and the
  real model's image/video processor settings (``max_pixels`` 12845056), so the number of visual
  tokens depends only on the image the gateway sends, exactly as in production.
* ``gpt_oss``: ``GptOssForCausalLM`` (hidden 64, one sliding + one full attention layer, 4 experts)
  with the real o200k_harmony vocabulary, rebuilt from the encoding that ships inside the
  ``openai_harmony`` binary (vLLM's own dependency), so vLLM's harmony chat path runs unchanged.

The weights are random (fixed seed), so the text they produce is gibberish; everything around it
(request parsing, image processing, token accounting, reasoning parsing, structured outputs) is real.

Output goes to ``<cache-root>/<key>/{qwen2_5_vl,gpt_oss}`` where the key hashes this file and the
library versions that shape the saved files; an existing complete build is reused instantly.
Run it with the vLLM venv's python (it needs torch, transformers, tokenizers, openai_harmony):

    .venv-vllm/bin/python deploy/cpu-stack/build_models.py [--cache-root DIR] [--json]

It prints the two model directories (as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SEED = 1234
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_ROOT = REPO_ROOT / ".cache" / "cpu-stack"
VLM_DIRNAME = "qwen2_5_vl"
GPT_OSS_DIRNAME = "gpt_oss"
COMPLETE_MARKER = "BUILD_COMPLETE"
# Versions that change what save_pretrained writes; part of the cache key with this file's bytes.
KEYED_DISTRIBUTIONS = ("torch", "transformers", "tokenizers")

# ---------------------------------------------------------------------------------------------
# Qwen2.5-VL
# ---------------------------------------------------------------------------------------------

# Qwen2.5's special tokens, in their real order (ids 151643..151656 in the real vocabulary).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL / Qwen2.5-VL-Instruct's chat template, verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The real model's processor defaults: max_pixels 12845056 = 16384 visual tokens of 28x28.
QWEN_MIN_PIXELS = 3136
QWEN_MAX_PIXELS = 12845056
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
QWEN_BPE_VOCAB = 1024

# Built-in BPE training text: the vocabulary of caption prompts and captions, so that prompt text
# costs roughly what it costs with the real tokenizer and the visual tokens dominate prompt_tokens.
TRAINING_TEXT = """\
You are a helpful assistant. Describe this image in detail. Describe the image in one sentence.
Write a rich, specific, multi-sentence description of the photo: the main subjects and what they
are doing, the setting and background, the lighting and colours, any visible text, notable objects,
and brands only if they are legible. Do not start with "This image shows" or "The image depicts".
Rewrite the caption below so that it reads naturally, fix grammar, keep every fact, add nothing.
Return only the improved caption, without any preamble, quotes or explanation.
A person stands on a wooden pier at sunset while gulls fly over the calm water of the harbour.
Two children are playing football in a green park; trees, a red bench and a white fence behind them.
A close-up of a cup of coffee on a table next to a laptop, a notebook and a pair of glasses.
A street at night with wet asphalt reflecting neon signs, parked cars and people with umbrellas.
A black and white dog runs across a sandy beach toward the sea under a bright blue sky with clouds.
A kitchen with marble counters, a bowl of fruit, a window with morning light and plants on the sill.
A mountain landscape covered in snow, a small cabin, pine trees, a frozen lake and a clear sky.
A woman in a yellow jacket rides a bicycle through a city square with shops, signs and a fountain.
The text on the sign reads "OPEN 24 HOURS" in large letters above the door of a small grocery store.
A plate of pasta with tomato sauce, basil and cheese; a glass of water and a fork on a linen napkin.
{"caption": "A cat sleeps on a sofa.", "tags": ["cat", "sofa", "indoor"], "confidence": 0.9}
The quick brown fox jumps over the lazy dog. 0123456789 , . ; : ! ? ' " ( ) [ ] { } - _ / \\ @ # % &
"""


def train_qwen_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a small byte-level BPE with Qwen2's pre-tokenizer; returns (vocab, merges)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=QWEN_BPE_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # One line per sample keeps the trainer's counting independent of thread scheduling.
    tokenizer.train_from_iterator(TRAINING_TEXT.splitlines(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def build_qwen_tokenizer() -> Any:
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = train_qwen_bpe()
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": [
                AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS
            ]
        }
    )
    # Set after the specials exist so that they keep Qwen's relative order (endoftext first).
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    for token in QWEN_SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"special token {token} does not encode to a single id: {ids}")
    return tokenizer


def qwen_vl_config(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig

    def token_id(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    vocab_size = -(-len(tokenizer) // 64) * 64  # round up, as real checkpoints pad their vocab
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        "tie_word_embeddings": True,
        "bos_token_id": token_id("<|endoftext|>"),
        "eos_token_id": token_id("<|im_end|>"),
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "out_hidden_size": 128,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=True,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )


def build_qwen_vl(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = build_qwen_tokenizer()
    config = qwen_vl_config(tokenizer)
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.bos_token_id],
        pad_token_id=config.text_config.bos_token_id,
    )
    model.save_pretrained(out)
    pixel_kwargs: dict[str, Any] = {
        "min_pixels": QWEN_MIN_PIXELS,
        "max_pixels": QWEN_MAX_PIXELS,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    }
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixel_kwargs),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixel_kwargs),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)


# ---------------------------------------------------------------------------------------------
# gpt-oss
# ---------------------------------------------------------------------------------------------

GPT_OSS_VOCAB = 201088
GPT_OSS_FIRST_SPECIAL = 199998  # <|startoftext|>; every id from here up is a special token
# o200k's pre-tokenizer pattern (tiktoken_ext.openai_public.o200k_base); o200k_harmony shares it.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
# Text that the rebuilt tokenizer must split exactly as harmony's own encoder does.
TOKENIZER_CHECK_TEXT = (
    "Hello, world! It's 2025-06-01 at 12:34; naïve café, 東京, emoji 🙂\n\n  tabs\tand\r\nCRLF "
    "<|start|>assistant<|channel|>analysis<|message|>Think.<|end|>"
)


def harmony_vocabulary() -> tuple[dict[bytes, int], dict[str, int]]:
    """Read o200k_harmony's ranks and special tokens out of openai_harmony; no network."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    inner = encoding._inner  # decode_bytes is only exposed on the native object
    ranks = {bytes(inner.decode_bytes([i])): i for i in range(GPT_OSS_FIRST_SPECIAL)}
    specials = {
        bytes(inner.decode_bytes([i])).decode(): i for i in range(GPT_OSS_FIRST_SPECIAL, GPT_OSS_VOCAB)
    }
    if len(ranks) != GPT_OSS_FIRST_SPECIAL or len(specials) != GPT_OSS_VOCAB - GPT_OSS_FIRST_SPECIAL:
        raise RuntimeError("o200k_harmony from openai_harmony is not the expected 201088-token vocabulary")
    return ranks, specials


def build_gpt_oss_tokenizer() -> Any:
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks, specials = harmony_vocabulary()

    class _HarmonyConverter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return ranks

    # Specials in id order, so that add_special_tokens hands out exactly their harmony ids.
    ordered_specials = [name for name, _ in sorted(specials.items(), key=lambda item: item[1])]
    backend = _HarmonyConverter(
        vocab_file="o200k_harmony", pattern=O200K_PATTERN, extra_special_tokens=ordered_specials
    ).converted()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    check_gpt_oss_tokenizer(tokenizer, specials)
    return tokenizer


def check_gpt_oss_tokenizer(tokenizer: Any, specials: dict[str, int]) -> None:
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    expected = encoding.encode(TOKENIZER_CHECK_TEXT, allowed_special="all")
    got = tokenizer.encode(TOKENIZER_CHECK_TEXT, add_special_tokens=False)
    if got != expected:
        raise RuntimeError(f"rebuilt o200k_harmony tokenizer disagrees with harmony:\n{got}\n{expected}")
    if len(tokenizer) != GPT_OSS_VOCAB or tokenizer.convert_tokens_to_ids("<|call|>") != specials["<|call|>"]:
        raise RuntimeError(f"rebuilt tokenizer has {len(tokenizer)} tokens, expected {GPT_OSS_VOCAB}")


def build_gpt_oss(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM

    tokenizer = build_gpt_oss_tokenizer()
    config = GptOssConfig(
        vocab_size=GPT_OSS_VOCAB,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        layer_types=["sliding_attention", "full_attention"],
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 150000.0,
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 4096,
        },
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["GptOssForCausalLM"],
    )
    torch.manual_seed(SEED)
    model = GptOssForCausalLM(config).to(torch.bfloat16)
    # As the real checkpoint: stop on <|return|>, <|endoftext|> and <|call|>.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[
            tokenizer.convert_tokens_to_ids(t) for t in ("<|return|>", "<|endoftext|>", "<|call|>")
        ],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def cache_key() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in KEYED_DISTRIBUTIONS:
        digest.update(f"\n{name}=={importlib.metadata.version(name)}".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent builders (parallel test sessions, dev-stack + pytest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def set_deterministic() -> None:
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def ensure_models(cache_root: Path, force: bool = False) -> dict[str, Path]:
    """Return {"vlm": dir, "gpt_oss": dir}, building them first unless a complete build exists."""
    target = cache_root / cache_key()
    with exclusive_lock(cache_root / f".{target.name}.lock"):
        if force and target.exists():
            shutil.rmtree(target)
        if not (target / COMPLETE_MARKER).exists():
            # Build next to the target and rename, so a killed build never looks complete.
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_root))
            try:
                set_deterministic()
                build_qwen_vl(staging / VLM_DIRNAME)
                build_gpt_oss(staging / GPT_OSS_DIRNAME)
                (staging / COMPLETE_MARKER).write_text(json.dumps({"seed": SEED, "key": target.name}) + "\n")
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return {"vlm": target / VLM_DIRNAME, "gpt_oss": target / GPT_OSS_DIRNAME}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cache-root", type=Path, default=Path(os.environ.get("CPU_STACK_CACHE", DEFAULT_CACHE_ROOT))
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    parser.add_argument("--json", action="store_true", help='print {"vlm": DIR, "gpt_oss": DIR}')
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    paths = ensure_models(args.cache_root.resolve(), force=args.force)
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}))
    else:
        for name, path in paths.items():
            print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
