"""Remote-code InternVL checkpoints -> the transformers-native `InternVLForConditionalGeneration` layout.

The released generative PRMs (VisualPRM-8B, DreamPRM-1.5) and the InternVL chat models they start from ship as
`InternVLChatModel` with the model's own Python files (`trust_remote_code`). This repo loads every model through
transformers' own classes (`models.load_vlm`), so such a checkpoint is converted once:

    python BoN/convert_internvl.py --src path/to/DreamPRM-1.5 --out models/dreamprm-1.5-hf

Read straight from the safetensors and config.json, without running the checkpoint's code. Two language-model
families occur: Qwen2 (InternVL3-1B ..., the 1.5 PRM; weights keep their names) and InternLM2 (InternVL2.5-8B,
VisualPRM-8B; renamed to Llama's, the fused `wqkv` split per key/value group). transformers' own converter
(`src/transformers/models/internvl/convert_internvl_weights_to_hf.py`, source tree only) fits neither released PRM:
it runs the remote code, keys the language model type on a fixed list of hub names, and fetches a tokenizer
from the hub.

The tokenizer is the checkpoint's own when transformers can read it without remote code (Qwen2's is); an
InternLM2 tokenizer needs `--tokenizer` pointing at a transformers-format one of the same vocabulary.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .io import DataError, read_json, write_json
from .models import chat_template

IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>"}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# Remote-code name -> native name, applied in order to one key (vision tower and projector).
VISION_RENAMES = [
    (r"^vision_model\.", "model.vision_tower."),
    (r"\.encoder\.layers\.", ".encoder.layer."),
    (r"\.embeddings\.class_embedding$", ".embeddings.cls_token"),
    (r"\.embeddings\.position_embedding$", ".embeddings.position_embeddings"),
    (r"\.embeddings\.patch_embedding\.", ".embeddings.patch_embeddings.projection."),
    (r"\.ls([12])$", r".lambda_\1"),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.", ".attention."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"^mlp1\.0\.", "model.multi_modal_projector.layer_norm."),
    (r"^mlp1\.1\.", "model.multi_modal_projector.linear_1."),
    (r"^mlp1\.3\.", "model.multi_modal_projector.linear_2."),
]
# InternLM2 -> Llama inside the language model.
INTERNLM2_RENAMES = [
    (r"\.tok_embeddings\.", ".embed_tokens."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
]
LM_FAMILIES = {"Qwen2ForCausalLM": "qwen2", "InternLM2ForCausalLM": "internlm2", "LlamaForCausalLM": "llama"}
# remote-code config keys that no transformers-native config takes
DROP_KEYS = {"_name_or_path", "auto_map", "architectures", "use_flash_attn", "attn_implementation", "model_type",
             "transformers_version", "torch_dtype", "dtype", "use_bfloat16", "drop_path_rate", "initializer_factor",
             "bias", "qkv_bias", "qk_normalization", "attention_probs_dropout_prob", "image_size", "patch_size"}


def remote_config(src: Path) -> dict:
    cfg = read_json(src / "config.json", "model config") if (src / "config.json").is_file() else None
    if not isinstance(cfg, dict) or "llm_config" not in cfg or "vision_config" not in cfg:
        raise DataError(f"{src}: not a remote-code InternVL checkpoint (config.json without llm_config and "
                        "vision_config); a transformers-native one needs no conversion")
    arch = (cfg["llm_config"].get("architectures") or ["?"])[0]
    if arch not in LM_FAMILIES:
        raise DataError(f"{src}/config.json: language model {arch!r} is not one of {', '.join(LM_FAMILIES)}")
    return cfg


def native_config(cfg: dict, image_token_id: int):
    """The InternVLConfig of a remote-code config.json."""
    import transformers as T

    v, llm = dict(cfg["vision_config"]), dict(cfg["llm_config"])
    size = int(cfg.get("force_image_size") or v["image_size"])
    patch = int(v["patch_size"])
    vision = {k: x for k, x in v.items() if k not in DROP_KEYS}
    vision.update(image_size=[size, size], patch_size=[patch, patch], attention_bias=bool(v.get("qkv_bias", True)),
                  use_qk_norm=bool(v.get("qk_normalization", False)), use_absolute_position_embeddings=True,
                  projection_dropout=0.0)
    if "attention_probs_dropout_prob" in v:
        vision["attention_dropout"] = v["attention_probs_dropout_prob"]
    family = LM_FAMILIES[llm["architectures"][0]]
    text = {k: x for k, x in llm.items() if k not in DROP_KEYS}
    if family == "internlm2":
        text["attention_bias"] = bool(llm.get("bias", False))
    text = T.AutoConfig.for_model("qwen2" if family == "qwen2" else "llama", **text)
    ds = float(cfg.get("downsample_ratio", 0.5))
    seq = round((size // patch) ** 2 * ds * ds)
    return T.InternVLConfig(vision_config=vision, text_config=text.to_dict(), image_token_id=image_token_id,
                            image_seq_length=seq, downsample_ratio=ds, projector_hidden_act="gelu",
                            vision_feature_layer=int(cfg.get("select_layer", -1)),
                            tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)))


def read_weights(src: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = src / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json(index, "safetensors index")["weight_map"].values()))
    elif (src / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise DataError(f"{src}: no model.safetensors (or index); convert .bin weights to safetensors first")
    out: dict = {}
    for f in files:
        out.update(load_file(str(src / f)))
    return out


def native_weights(old: dict[str, torch.Tensor], family: str, text_cfg, vision_hidden: int) -> dict:
    """Remote-code weights under native names: vision q/k/v split from the fused qkv; InternLM2's grouped wqkv
    ([kv group: its q heads, then k, then v] x head dim, per group) split into q, k, v."""
    heads, kv_heads = text_cfg.num_attention_heads, text_cfg.num_key_value_heads
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // heads
    per_group = heads // kv_heads
    new: dict = {}
    for key, w in old.items():
        if key.startswith("language_model."):
            if key in ("language_model.lm_head.weight", "language_model.output.weight"):
                name = "lm_head.weight"
            elif key.startswith("language_model.model."):
                name = "model.language_model." + key.removeprefix("language_model.model.")
            else:
                raise DataError(f"unexpected language-model weight {key}")
            if family == "internlm2":
                for pattern, repl in INTERNLM2_RENAMES:
                    name = re.sub(pattern, repl, name)
                if name.endswith(".attention.wqkv.weight"):
                    g = w.reshape(kv_heads, per_group + 2, head_dim, w.shape[-1])
                    base = name.removesuffix(".attention.wqkv.weight") + ".self_attn."
                    new[base + "q_proj.weight"] = g[:, :per_group].reshape(-1, w.shape[-1]).contiguous()
                    new[base + "k_proj.weight"] = g[:, per_group].reshape(-1, w.shape[-1]).contiguous()
                    new[base + "v_proj.weight"] = g[:, per_group + 1].reshape(-1, w.shape[-1]).contiguous()
                    continue
            new[name] = w
            continue
        name = key
        for pattern, repl in VISION_RENAMES:
            name = re.sub(pattern, repl, name)
        if ".attention.qkv." in name:  # [q; k; v] rows of the vision tower
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), w.split(vision_hidden, dim=0)):
                new[name.replace(".qkv.", f".{part}.")] = chunk.contiguous()
            continue
        new[name] = w
    return new


def load_tokenizer(where: Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(where), extra_special_tokens=IMAGE_TOKENS, trust_remote_code=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{where}: cannot read its tokenizer without remote code ({' '.join(str(e).split())[:200]}); "
                        "pass --tokenizer with a transformers-format tokenizer of the same vocabulary") from None
    for t in IMAGE_TOKENS.values():
        if tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id):
            raise DataError(f"{where}: the tokenizer has no {t} token: not an InternVL tokenizer")
    return tok


def convert(src: str | Path, out: str | Path, tokenizer: str | Path | None = None, as_prm: bool = True,
            system_prompt: str | None = None, dtype: str = "auto") -> Path:
    """Write the native checkpoint (weights, config, processor) to `out`; with `as_prm` also a prm_config.json
    marking it a generative PRM, with `system_prompt` (None: ours), so BoN/score.py scores it by its kind."""
    import transformers as T

    from .export import SYSTEM_PROMPT
    from .generative import FORMAT
    from .prm import CONFIG_FILE

    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise DataError(f"--dtype must be auto, bfloat16, float16 or float32, got {dtype!r}")
    src, out = Path(src), Path(out)
    cfg = remote_config(src)
    tok = load_tokenizer(Path(tokenizer) if tokenizer else src)
    config = native_config(cfg, tok.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]))
    family = LM_FAMILIES[cfg["llm_config"]["architectures"][0]]
    weights = native_weights(read_weights(src), family, config.text_config, config.vision_config.hidden_size)
    if config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    with torch.device("meta"):
        model = T.InternVLForConditionalGeneration(config)
    want = set(model.state_dict()) - ({"lm_head.weight"} if config.tie_word_embeddings else set())
    missing, extra = sorted(want - set(weights)), sorted(set(weights) - want)
    if missing or extra:
        raise DataError(f"{src}: weights do not fit the native InternVL layout; missing {missing[:5]}, "
                        f"unexpected {extra[:5]} ({len(missing)} / {len(extra)} in all)")
    model.load_state_dict(weights, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    if dtype != "auto":
        model = model.to(getattr(torch, dtype))
    size = config.vision_config.image_size[0]
    image_processor = T.GotOcr2ImageProcessor(
        size={"height": size, "width": size}, crop_to_patches=bool(cfg.get("dynamic_image_size", True)),
        min_patches=int(cfg.get("min_dynamic_patch", 1)), max_patches=int(cfg.get("max_dynamic_patch", 12)),
        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)
    processor = T.InternVLProcessor(image_processor=image_processor, tokenizer=tok,
                                    video_processor=T.InternVLVideoProcessor(),
                                    image_seq_length=config.image_seq_length,
                                    chat_template=chat_template("<IMG_CONTEXT>\n"))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if as_prm:
        write_json(out / CONFIG_FILE, {"kind": "generative", "input_format": FORMAT,
                                       "system_prompt": system_prompt or SYSTEM_PROMPT, "converted_from": str(src)})
    (out / "conversion.json").write_text(json.dumps({"source": str(src), "language_model": family,
                                                     "tensors": len(weights)}, indent=1) + "\n")
    return out
