"""Tiny random checkpoints of the three models, built offline in seconds, for tests and the CPU demo.

    python -m dreamprm.miniworld.tiny --out models/tiny     # writes policy/ (InternVL), prm/ (Qwen2-VL), judge/ (Qwen2)

Each directory holds a model, a tokenizer trained here on the prompts' own text, a chat template and (for
the two VLMs) an image processor, so the model layer loads it exactly like the real hub checkpoint. The
weights are random: these models produce noise, which is what tests of the plumbing need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import prompts
from ..cli import StageArgs, parse_args
from ..models import chat_template

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
QWEN2VL_TOKENS = {"vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
                  "image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}


def _corpus() -> list[str]:
    """Text like what the models will see, so the BPE merges make prompts short in tokens."""
    numbers = " ".join(str(i) for i in range(200))
    return [prompts.structured_prompt("What is 3 + 4?", "Hint: answer with a number.", ["5", "7"]),
            prompts.completion_prompt("Which is larger?", "Step 1: Restate the question."),
            prompts.judge_prompt("Q?", "B", "(B) 7"), numbers, "correct incorrect yes no A B C D E",
            *_world_text()] * 20


def _world_text() -> list[str]:
    """The CPU mini world's wording (dreamprm/miniworld/world.py): real tokenizers know English words whole, so the
    tiny one should too; otherwise a phrase is a dozen character pieces for the tiny PRM to assemble."""
    from .world import DOMAINS

    return [" ".join(d.error_phrases + d.neutral_phrases) for d in DOMAINS]


def _tokenizer(mm_tokens: dict, vocab_size: int = 1024):
    import transformers as T
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL, *mm_tokens.values()],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return T.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     extra_special_tokens=mm_tokens, padding_side="left")


def _text_config(tok, hidden: int = 64) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                pad_token_id=ids("<|endoftext|>"))


def build_policy(out: Path) -> None:
    """InternVL architecture: 56 px tiles of 4 image tokens each, at most 2 tiles plus a thumbnail."""
    import transformers as T

    tok = _tokenizer(INTERNVL_TOKENS)
    # image_seq_length must equal (image_size / patch)^2 * downsample_ratio^2 in config AND processor.
    cfg = T.InternVLConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=[56, 56], patch_size=[14, 14]),
        text_config=dict(model_type="qwen2", **_text_config(tok)),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5)
    proc = T.InternVLProcessor(
        image_processor=T.GotOcr2ImageProcessor(size={"height": 56, "width": 56}, crop_to_patches=True,
                                                max_patches=2),
        tokenizer=tok, video_processor=T.InternVLVideoProcessor(), image_seq_length=4,
        chat_template=chat_template("<IMG_CONTEXT>\n"))
    T.InternVLForConditionalGeneration(cfg).save_pretrained(out)
    proc.save_pretrained(out)


def build_prm(out: Path) -> None:
    """Qwen2-VL architecture: images of at most 112 x 112 px, i.e. at most 16 image tokens."""
    import transformers as T

    tok = _tokenizer(QWEN2VL_TOKENS)
    ids = tok.convert_tokens_to_ids
    # mrope_section must sum to head_dim / 2 (64 / 4 heads / 2 = 8); vision hidden_size = text hidden_size.
    cfg = T.Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(**_text_config(tok), rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                               "mrope_section": [2, 3, 3]}),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    proc = T.Qwen2VLProcessor(
        image_processor=T.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112), tokenizer=tok,
        video_processor=T.Qwen2VLVideoProcessor(),
        chat_template=chat_template("<|vision_start|><|image_pad|><|vision_end|>"))
    T.Qwen2VLForConditionalGeneration(cfg).save_pretrained(out)
    proc.save_pretrained(out)


def build_judge(out: Path) -> None:
    """Qwen2 causal LM with a text-only chat template."""
    import transformers as T

    tok = _tokenizer({})
    tok.chat_template = chat_template("")
    T.Qwen2ForCausalLM(T.Qwen2Config(**_text_config(tok))).save_pretrained(out)
    tok.save_pretrained(out)


BUILDERS = {"policy": build_policy, "prm": build_prm, "judge": build_judge}


def build_all(out: str | Path, seed: int = 0, force: bool = False) -> dict[str, Path]:
    """Write every tiny model under `out` (skipping ones already there unless `force`); return their paths."""
    import shutil

    import torch

    out = Path(out)
    paths = {}
    for name, build in BUILDERS.items():
        path = out / name
        if force or not path.is_dir():
            torch.manual_seed(seed)
            tmp = out / f".{name}.tmp"  # built aside, then renamed: a killed build leaves no half model
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            build(tmp)
            shutil.rmtree(path, ignore_errors=True)
            tmp.rename(path)
        paths[name] = path
    return paths


@dataclass
class TinyConfig(StageArgs):
    """Write tiny random policy (InternVL), PRM (Qwen2-VL) and judge (Qwen2) checkpoints, offline."""
    out: str = field(default="models/tiny", metadata={"help": "directory for policy/, prm/ and judge/"})
    seed: int = field(default=0, metadata={"help": "seed of the random weights"})
    force: bool = field(default=False, metadata={"help": "rebuild models that already exist"})


def main(argv=None) -> None:
    cfg = parse_args(TinyConfig, argv)
    for name, path in build_all(cfg.resolve(cfg.out), cfg.seed, cfg.force).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
