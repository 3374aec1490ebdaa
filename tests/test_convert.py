"""The remote-code InternVL converter (`dreamprm/convert.py`) on tiny checkpoints laid out like the released ones:
InternVL3 style (Qwen2 language model) and InternVL2.5 style (InternLM2, fused grouped wqkv), sharded or not."""
import json
import shutil

import pytest
import torch
import transformers as T
from safetensors.torch import save_file

from dreamprm.convert import convert
from dreamprm.generative import GenerativePRM
from dreamprm.io import DataError
from dreamprm.models import load_vlm
from dreamprm.prm import saved_kind

QUESTION = "How many squares are there?"
STEPS = ["Step 1: Count the red ones: 2.", "Step 2: Count the blue ones: 1.", "Step 3: 2 + 1 = 3."]


def remote_state_dict(model, family: str) -> dict:
    """The model's weights under InternVLChatModel's names (vision_model / mlp1 / language_model), built from
    the native module tree by hand: fused vision qkv, and for InternLM2 its names and per-group wqkv."""
    out, sd = {}, model.state_dict()
    text = model.config.text_config
    for key, w in sd.items():
        if key.startswith("model.vision_tower."):
            k = "vision_model." + key.removeprefix("model.vision_tower.")
            k = (k.replace("encoder.layer.", "encoder.layers.").replace("embeddings.cls_token", "embeddings.class_embedding")
                 .replace("embeddings.position_embeddings", "embeddings.position_embedding")
                 .replace("patch_embeddings.projection", "patch_embedding").replace("lambda_", "ls")
                 .replace("attention.projection_layer", "attn.proj").replace("layernorm_before", "norm1")
                 .replace("layernorm_after", "norm2"))
            if ".attention.q_proj." in k:
                kk = k.replace(".attention.q_proj.", ".attn.qkv.")
                out[kk] = torch.cat([w, sd[key.replace("q_proj", "k_proj")], sd[key.replace("q_proj", "v_proj")]])
            elif ".attention.k_proj." in k or ".attention.v_proj." in k:
                continue
            else:
                out[k.replace(".attention.", ".attn.")] = w
        elif key.startswith("model.multi_modal_projector."):
            part = key.removeprefix("model.multi_modal_projector.")
            for native, remote in (("layer_norm.", "mlp1.0."), ("linear_1.", "mlp1.1."), ("linear_2.", "mlp1.3.")):
                if part.startswith(native):
                    out[remote + part.removeprefix(native)] = w
        elif key == "lm_head.weight":
            out["language_model.output.weight" if family == "internlm2" else "language_model.lm_head.weight"] = w
        else:
            k = "language_model.model." + key.removeprefix("model.language_model.")
            if family == "internlm2":
                if ".self_attn.q_proj." in k:
                    kv, hd = text.num_key_value_heads, text.hidden_size // text.num_attention_heads
                    per = text.num_attention_heads // kv
                    q = w.reshape(kv, per, hd, -1)
                    kk = sd[key.replace("q_proj", "k_proj")].reshape(kv, 1, hd, -1)
                    vv = sd[key.replace("q_proj", "v_proj")].reshape(kv, 1, hd, -1)
                    out[k.replace(".self_attn.q_proj.", ".attention.wqkv.")] = torch.cat([q, kk, vv], 1).reshape(-1, q.shape[-1])
                    continue
                if ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
                    continue
                for a, b in ((".embed_tokens.", ".tok_embeddings."), (".self_attn.o_proj.", ".attention.wo."),
                             (".mlp.gate_proj.", ".feed_forward.w1."), (".mlp.up_proj.", ".feed_forward.w3."),
                             (".mlp.down_proj.", ".feed_forward.w2."), (".input_layernorm.", ".attention_norm."),
                             (".post_attention_layernorm.", ".ffn_norm.")):
                    k = k.replace(a, b)
            out[k] = w
    return {k: v.contiguous().clone() for k, v in out.items()}


def remote_checkpoint(native, out, family="qwen2", shards=1):
    """A directory shaped like a remote-code InternVL release: config.json with vision_config / llm_config in
    their keys, safetensors under InternVLChatModel's names, the tokenizer files without the processor's."""
    model = T.InternVLForConditionalGeneration.from_pretrained(str(native))
    out.mkdir()
    sd = remote_state_dict(model, family)
    if family != "internlm2" and model.config.tie_word_embeddings:
        sd.pop("language_model.lm_head.weight", None)
    keys = sorted(sd)
    if shards == 1:
        save_file(sd, str(out / "model.safetensors"))
    else:
        parts = [keys[i::shards] for i in range(shards)]
        weight_map = {}
        for i, part in enumerate(parts, 1):
            name = f"model-0000{i}-of-0000{shards}.safetensors"
            save_file({k: sd[k] for k in part}, str(out / name))
            weight_map.update({k: name for k in part})
        (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    v, t = model.config.vision_config, model.config.text_config
    llm = {"architectures": ["InternLM2ForCausalLM" if family == "internlm2" else "Qwen2ForCausalLM"],
           "model_type": "internlm2" if family == "internlm2" else "qwen2", "_name_or_path": "somewhere/LM",
           "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config"} if family == "internlm2" else None,
           "vocab_size": t.vocab_size, "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
           "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
           "num_key_value_heads": t.num_key_value_heads, "max_position_embeddings": t.max_position_embeddings,
           "rms_norm_eps": t.rms_norm_eps, "rope_theta": t.rope_parameters["rope_theta"], "rope_scaling": None,
           "hidden_act": "silu", "bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id,
           "pad_token_id": t.pad_token_id, "tie_word_embeddings": bool(model.config.tie_word_embeddings),
           "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2", "use_cache": True}
    if family == "internlm2":
        llm["bias"] = False
    config = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internvl2_5",
              "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"}, "downsample_ratio": 0.5,
              "force_image_size": v.image_size[0], "select_layer": -1, "ps_version": "v2", "dynamic_image_size": True,
              "max_dynamic_patch": 2, "min_dynamic_patch": 1, "use_thumbnail": True, "torch_dtype": "bfloat16",
              "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
                                "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
                                "num_attention_heads": v.num_attention_heads, "num_hidden_layers": v.num_hidden_layers,
                                "image_size": v.image_size[0], "patch_size": v.patch_size[0], "num_channels": 3,
                                "qkv_bias": False, "qk_normalization": False, "layer_norm_eps": v.layer_norm_eps,
                                "norm_type": "layer_norm", "hidden_act": "gelu", "drop_path_rate": 0.1,
                                "initializer_factor": 1.0, "use_flash_attn": True, "attention_dropout": 0.0,
                                "dropout": 0.0},
              "llm_config": llm}
    (out / "config.json").write_text(json.dumps(config))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(native / f, out / f)
    tc = json.loads((out / "tokenizer_config.json").read_text())
    for key in ("extra_special_tokens", "chat_template", "processor_class"):
        tc.pop(key, None)  # a released tokenizer knows nothing of the native processor's image tokens
    (out / "tokenizer_config.json").write_text(json.dumps(tc))
    return model


@pytest.fixture(scope="module")
def llama_internvl(tmp_path_factory, tiny_models):
    """A tiny native InternVL with a Llama language model (what InternLM2 becomes), the policy's tokenizer."""
    d = tmp_path_factory.mktemp("llama_internvl")
    base = T.InternVLConfig.from_pretrained(str(tiny_models["policy"]))
    t = base.text_config
    text = dict(model_type="llama", vocab_size=t.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, attention_bias=False,
                bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4}, tie_word_embeddings=False)
    cfg = T.InternVLConfig(vision_config=base.vision_config.to_dict(), text_config=text,
                           image_token_id=base.image_token_id, image_seq_length=base.image_seq_length,
                           downsample_ratio=base.downsample_ratio, tie_word_embeddings=False)
    torch.manual_seed(0)
    T.InternVLForConditionalGeneration(cfg).save_pretrained(d)
    T.AutoProcessor.from_pretrained(str(tiny_models["policy"])).save_pretrained(d)
    return d


def same_logits(native_dir, converted_dir, image):
    a, proc = load_vlm(str(native_dir), "cpu", "fp32")
    b, proc_b = load_vlm(str(converted_dir), "cpu", "fp32")
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert proc_b.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == text
    inputs = proc(text=[text], images=[image], return_tensors="pt")
    inputs_b = proc_b(text=[text], images=[image], return_tensors="pt")
    assert torch.equal(inputs["input_ids"], inputs_b["input_ids"])  # same tiles, image tokens and text
    ip = proc_b.image_processor  # InternVL's own normalisation (the tiny policy keeps the processor's default)
    assert list(ip.image_mean) == [0.485, 0.456, 0.406] and ip.max_patches == 2 and ip.crop_to_patches
    with torch.no_grad():
        torch.testing.assert_close(a(**inputs).logits, b(**inputs).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shards", [1, 2])
def test_an_internvl3_style_checkpoint_converts_to_the_same_model(tmp_path, tiny_models, images, shards):
    remote_checkpoint(tiny_models["policy"], tmp_path / "remote", "qwen2", shards)
    convert(tmp_path / "remote", tmp_path / "hf")
    same_logits(tiny_models["policy"], tmp_path / "hf", images[2])
    info = json.loads((tmp_path / "hf/conversion.json").read_text())
    assert info["language_model"] == "qwen2"


def test_an_internvl25_style_checkpoint_with_internlm2_converts_to_the_same_model(tmp_path, llama_internvl, images):
    remote_checkpoint(llama_internvl, tmp_path / "remote", "internlm2", shards=2)
    remote_keys = json.loads((tmp_path / "remote/model.safetensors.index.json").read_text())["weight_map"]
    assert any(k.endswith("attention.wqkv.weight") for k in remote_keys) and "language_model.output.weight" in remote_keys
    convert(tmp_path / "remote", tmp_path / "hf")
    same_logits(llama_internvl, tmp_path / "hf", images[1])


def test_the_converted_prm_is_scored_as_generative_like_the_original(tmp_path, tiny_models, images):
    remote_checkpoint(tiny_models["policy"], tmp_path / "remote")
    (tmp_path / "system.txt").write_text("Reply + or - for every step.\n")
    convert(tmp_path / "remote", tmp_path / "hf", system_prompt="Reply + or - for every step.")
    assert saved_kind(tmp_path / "hf") == "generative"
    converted = GenerativePRM.from_pretrained(str(tmp_path / "hf"), "cpu", "fp32")
    native = GenerativePRM.from_pretrained(str(tiny_models["policy"]), "cpu", "fp32",
                                           system="Reply + or - for every step.")
    assert converted.system == native.system
    native.processor.image_processor = converted.processor.image_processor  # the same pixels in (see above)
    with torch.no_grad():
        a = converted.step_scores([converted.encoder.encode(images[0], QUESTION, STEPS)])
        b = native.step_scores([native.encoder.encode(images[0], QUESTION, STEPS)])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_what_cannot_be_converted_is_one_clear_error(tmp_path, tiny_models):
    with pytest.raises(DataError, match="needs no conversion"):
        convert(tiny_models["policy"], tmp_path / "x")
    remote_checkpoint(tiny_models["policy"], tmp_path / "remote")
    cfg = json.loads((tmp_path / "remote/config.json").read_text())
    cfg["llm_config"]["architectures"] = ["Phi3ForCausalLM"]
    (tmp_path / "remote/config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="Phi3ForCausalLM"):
        convert(tmp_path / "remote", tmp_path / "y")
    cfg["llm_config"]["architectures"] = ["Qwen2ForCausalLM"]
    (tmp_path / "remote/config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "remote/model.safetensors"))
    sd.pop("mlp1.1.weight")
    save_file(sd, str(tmp_path / "remote/model.safetensors"))
    with pytest.raises(DataError, match="missing.*multi_modal_projector.linear_1.weight"):
        convert(tmp_path / "remote", tmp_path / "z")


def test_the_command_converts_and_says_where(tmp_path, tiny_models, capsys):
    import runpy
    import sys

    remote_checkpoint(tiny_models["policy"], tmp_path / "remote")
    (tmp_path / "system.txt").write_text("Judge the steps.\n")
    argv = ["convert_internvl.py", "--path", str(tmp_path), "--src", "remote", "--out", "hf",
            "--system_prompt_file", "system.txt"]
    old = sys.argv
    try:
        sys.argv = argv
        runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "BoN/convert_internvl.py"),
                       run_name="__main__")
    finally:
        sys.argv = old
    assert "transformers-native InternVL, generative PRM" in capsys.readouterr().out
    assert json.loads((tmp_path / "hf/prm_config.json").read_text())["system_prompt"] == "Judge the steps."


def test_the_command_has_help():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "BoN/convert_internvl.py"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--src" in out and "--system_prompt_file" in out and "--tokenizer" in out
    out = subprocess.run([sys.executable, "-m", "dreamprm.miniworld.granularity", "--help"], capture_output=True,
                         text=True, check=True, cwd=root).stdout
    assert "--run" in out
