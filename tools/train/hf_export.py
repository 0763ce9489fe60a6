"""Writes a model.py model as a Hugging Face Gemma 4 checkpoint, laid out as
Google's Gemma4ForConditionalGeneration repositories are: config.json with
the hparams in "text_config", model.safetensors with the language model
under "model.language_model.", tokenizer.json (BPE with byte fallback),
tokenizer_config.json, chat_template.jinja, generation_config.json.
`gemma4 convert DIR -o OUT.gguf` reads exactly these."""
import json
import os
import struct

import numpy as np
import torch

PREFIX = "model.language_model."


def bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: ordered dict name -> float32 numpy array."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = bf16_bits(a).tobytes() if dtype == "BF16" else np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hf_tensors(model):
    c = model.c
    t = {}

    def put(name, p):
        t[PREFIX + name] = p.detach().float().cpu().numpy()

    put("embed_tokens.weight", model.embed_tokens.weight)
    if c.P:
        put("embed_tokens_per_layer.weight", model.embed_tokens_per_layer.weight)
        put("per_layer_model_projection.weight", model.per_layer_model_projection.weight)
        put("per_layer_projection_norm.weight", model.per_layer_projection_norm)
    put("norm.weight", model.norm)
    for il, L in enumerate(model.layers):
        p = f"layers.{il}."
        put(p + "input_layernorm.weight", L.input_layernorm)
        put(p + "self_attn.q_proj.weight", L.q_proj.weight)
        put(p + "self_attn.q_norm.weight", L.q_norm)
        if L.own_kv:
            put(p + "self_attn.k_proj.weight", L.k_proj.weight)
            if not L.k_eq_v:
                put(p + "self_attn.v_proj.weight", L.v_proj.weight)
            put(p + "self_attn.k_norm.weight", L.k_norm)
        put(p + "self_attn.o_proj.weight", L.o_proj.weight)
        put(p + "post_attention_layernorm.weight", L.post_attention_layernorm)
        put(p + "pre_feedforward_layernorm.weight", L.pre_feedforward_layernorm)
        put(p + "mlp.gate_proj.weight", L.gate_proj.weight)
        put(p + "mlp.up_proj.weight", L.up_proj.weight)
        put(p + "mlp.down_proj.weight", L.down_proj.weight)
        put(p + "post_feedforward_layernorm.weight", L.post_feedforward_layernorm)
        if c.n_expert:
            put(p + "router.proj.weight", L.router_proj.weight)
            put(p + "router.scale", L.router_scale)
            put(p + "router.per_expert_scale", L.per_expert_scale)
            put(p + "experts.gate_up_proj", L.gate_up)
            put(p + "experts.down_proj", L.down)
            put(p + "pre_feedforward_layernorm_2.weight", L.pre_feedforward_layernorm_2)
            put(p + "post_feedforward_layernorm_1.weight", L.post_feedforward_layernorm_1)
            put(p + "post_feedforward_layernorm_2.weight", L.post_feedforward_layernorm_2)
        if c.P:
            put(p + "per_layer_input_gate.weight", L.per_layer_input_gate.weight)
            put(p + "per_layer_projection.weight", L.per_layer_projection.weight)
            put(p + "post_per_layer_input_norm.weight", L.post_per_layer_input_norm)
        put(p + "layer_scalar", L.layer_scalar)
    return t


def hf_config(c, eos_ids):
    text = {
        "model_type": "gemma4_text",
        "vocab_size": c.vocab,
        "vocab_size_per_layer_input": c.vocab,
        "hidden_size": c.d,
        "intermediate_size": c.n_ff,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head_kv,
        "head_dim": c.hd_swa,
        "global_head_dim": c.hd_full,
        "hidden_size_per_layer_input": c.P,
        "num_kv_shared_layers": c.n_kv_shared,
        "use_double_wide_mlp": c.double_wide,
        "sliding_window": c.window,
        "max_position_embeddings": c.n_ctx,
        "layer_types": [("sliding_attention" if c.swa(il) else "full_attention") for il in range(c.n_layer)],
        "rope_parameters": {
            "full_attention": {"rope_type": "proportional", "rope_theta": c.theta_full,
                               "partial_rotary_factor": c.partial_rotary_full},
            "sliding_attention": {"rope_type": "default", "rope_theta": c.theta_swa},
        },
        "rms_norm_eps": c.eps,
        "final_logit_softcapping": c.softcap,
        "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": eos_ids,
        "pad_token_id": 0,
    }
    if c.n_head_kv_full:
        text["num_global_key_value_heads"] = c.n_head_kv_full
    text["attention_k_eq_v"] = bool(c.k_eq_v_full)
    if c.n_expert:
        text.update({"enable_moe_block": True, "num_experts": c.n_expert, "top_k_experts": c.n_expert_used,
                     "moe_intermediate_size": c.n_ff_exp})
    return {"architectures": ["Gemma4ForConditionalGeneration"], "model_type": "gemma4", "text_config": text,
            "tie_word_embeddings": True, "torch_dtype": "float32"}


# Our own template for the turn grammar of docs/architecture.md §6.1 (no
# tools, no images): what the engine's C chat code renders.
CHAT_TEMPLATE = """{{- bos_token -}}
{%- set first = 0 -%}
{%- if messages and messages[0]['role'] in ['system', 'developer'] -%}
{{- '<|turn>system\\n' -}}
{%- if enable_thinking is defined and enable_thinking -%}{{- '<|think|>\\n' -}}{%- endif -%}
{{- messages[0]['content'] | trim -}}{{- '<turn|>\\n' -}}
{%- set first = 1 -%}
{%- elif enable_thinking is defined and enable_thinking -%}
{{- '<|turn>system\\n<|think|>\\n<turn|>\\n' -}}
{%- endif -%}
{%- for m in messages[first:] -%}
{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}
{{- '<|turn>' + role + '\\n' + (m['content'] | trim) + '<turn|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|turn>model\\n' -}}{%- endif -%}
"""


def write_tokenizer(out, vocab, merges, special):
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, t in enumerate(vocab) if t in special]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\n+|[^\n]+"}, "behavior": "Isolated", "invert": False},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(vocab)}, "merges": [m.split(" ", 1) for m in merges]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    named = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>",
             "mask_token": "<mask>", "sot_token": "<|turn>", "eot_token": "<turn|>", "think_token": "<|think|>",
             "soc_token": "<|channel>", "eoc_token": "<channel|>", "std_token": "<|tool>", "etd_token": "<tool|>",
             "stc_token": "<|tool_call>", "etc_token": "<tool_call|>", "str_token": "<|tool_response>",
             "etr_token": "<tool_response|>", "escape_token": '<|"|>', "boi_token": "<|image>",
             "boa_token": "<|audio>", "image_token": "<|image|>", "audio_token": "<|audio|>",
             "eoi_token": "<image|>", "eoa_token": "<audio|>", "video_token": "<|video|>"}
    tc = dict(named)
    tc.update({"add_bos_token": True, "add_eos_token": False, "clean_up_tokenization_spaces": False,
               "model_max_length": 1000000, "tokenizer_class": "GemmaTokenizer",
               "extra_special_tokens": [t for t in special if t not in named.values()]})
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, ensure_ascii=False, indent=1)
    with open(os.path.join(out, "chat_template.jinja"), "w") as f:
        f.write(CHAT_TEMPLATE)


def export(model, out, vocab, merges, special, dtype="F32"):
    os.makedirs(out, exist_ok=True)
    ids = {t: i for i, t in enumerate(vocab)}
    eos = [ids["<eos>"], ids["<turn|>"]]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(model.c, eos), f, indent=1)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 2, "eos_token_id": eos, "pad_token_id": 0, "do_sample": True,
                   "temperature": 1.0, "top_k": 64, "top_p": 0.95}, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), hf_tensors(model), dtype)
    write_tokenizer(out, vocab, merges, special)
