"""config.json of the families zoo's decoders, with the fields ``save_pretrained`` writes.

Each family's keys follow its transformers configuration class (Phi3Config, FalconConfig,
Starcoder2Config, Gemma2Config, Gemma3TextConfig); ``decoders.spec_from_config`` reads them back
and ``tests/test_families_more.py`` loads the written folders with transformers itself.
"""

from __future__ import annotations

from .decoders import ARCHITECTURES, GEMMAS, DecoderDims


def make_config(model_type: str, dims: DecoderDims, vocab_size: int, ids: dict[str, int | None]) -> dict:
    """An HF ``config.json`` dictionary of ``model_type`` (fields as ``save_pretrained`` writes them)."""
    bos = ids["bos"] if ids["bos"] is not None else ids["eos"]
    common = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": dims.hidden,
        "num_attention_heads": dims.heads,
        "num_hidden_layers": dims.layers,
        "max_position_embeddings": dims.max_positions,
        "initializer_range": 0.02,
        "bos_token_id": bos,
        "eos_token_id": ids["eos"],
        "attention_dropout": 0.0,
        "use_cache": True,
        "transformers_version": "4.46.0",
    }
    if model_type == "phi3":
        cfg = {
            "intermediate_size": dims.intermediate,
            "num_key_value_heads": dims.kv_heads,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "partial_rotary_factor": 1.0,
            "original_max_position_embeddings": dims.max_positions,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "sliding_window": None,
            "tie_word_embeddings": False,
            "pad_token_id": ids["pad"],
        }
    elif model_type == "falcon":
        cfg = {
            "ffn_hidden_size": dims.intermediate,
            "num_kv_heads": dims.kv_heads,
            "new_decoder_architecture": True,
            "num_ln_in_parallel_attn": 1,
            "multi_query": True,
            "parallel_attn": True,
            "alibi": False,
            "bias": False,
            "activation": "gelu",
            "layer_norm_epsilon": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "hidden_dropout": 0.0,
            "tie_word_embeddings": True,
        }
    elif model_type == "starcoder2":
        cfg = {
            "intermediate_size": dims.intermediate,
            "num_key_value_heads": dims.kv_heads,
            "hidden_act": "gelu_pytorch_tanh",
            "norm_epsilon": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "use_bias": True,
            "sliding_window": None,
            "residual_dropout": 0.0,
            "embedding_dropout": 0.0,
            "tie_word_embeddings": True,
        }
    elif model_type in GEMMAS:
        hd = dims.hidden // dims.heads
        cfg = {
            "intermediate_size": dims.intermediate,
            "num_key_value_heads": dims.kv_heads,
            "head_dim": hd,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "query_pre_attn_scalar": hd,
            "sliding_window": dims.max_positions,
            "attention_bias": False,
            "tie_word_embeddings": True,
            "pad_token_id": ids["pad"] if ids["pad"] is not None else ids["eos"],
            "layer_types": ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(dims.layers)],
        }
        if model_type == "gemma2":
            cfg.update(rope_theta=10000.0, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
        else:
            cfg.update(
                rope_theta=1_000_000.0,
                rope_local_base_freq=10000.0,
                rope_scaling=None,
                attn_logit_softcapping=None,
                final_logit_softcapping=None,
            )
    else:
        raise ValueError(f"unsupported model_type {model_type!r}")
    return dict(sorted({**common, **cfg}.items()))
