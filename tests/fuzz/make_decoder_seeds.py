#!/usr/bin/env python3
"""Writes the seeds of tests/fuzz/fuzz_decoder_config.cpp into tests/fuzz/corpus/decoder_config/:
the first byte picks the reader (0: the JSON configs - config.json, rsmoe.json, adapter_config.json -, 1:
model.safetensors.index.json)."""
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "decoder_config")

QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "hidden_size": 896,
         "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
         "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
         "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 32768, "bos_token_id": 151643,
         "eos_token_id": 151645, "torch_dtype": "bfloat16"}
LLAMA3 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
          "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
          "vocab_size": 128256, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "attention_bias": False,
          "mlp_bias": False, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "tie_word_embeddings": True}
QWEN2MOE = {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 2048,
            "intermediate_size": 5632, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
            "num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": False, "decoder_sparse_step": 1,
            "mlp_only_layers": [], "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
            "vocab_size": 151936, "rope_theta": 1000000.0}
MIXTRAL = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
           "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "rope_theta": 1000000.0,
           "sliding_window": None}
GMOE = dict(QWEN2, architectures=["LlavaQwenGMoeForCausalLM"])
# RSUniVLM's config.json (LLaVA-NeXT's fields; the vision sizes of tools/reference/fixtures_rsunivlm.py)
RSUNIVLM = dict(GMOE, model_type="llava_qwen", tie_word_embeddings=False, mm_hidden_size=48,
                mm_projector_type="mlp2x_gelu", mm_patch_merge_type="spatial_unpad", image_aspect_ratio="anyres_max_9",
                mm_vision_tower="google/siglip-so400m-patch14-384",
                vision_config={"hidden_size": 48, "image_size": 28, "intermediate_size": 100, "layer_norm_eps": 1e-06,
                               "model_type": "siglip_vision_model", "num_attention_heads": 4, "num_hidden_layers": 3,
                               "patch_size": 7})
# RS-MoE's rsmoe.json (tools/reference/fixtures_rsmoe.py's tiny sizes) and a PEFT adapter_config.json
RSMOE = {"architectures": ["RsMoe"], "vision": {"image_size": 28, "patch_size": 7, "hidden_size": 48,
         "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 100, "layer_norm_eps": 1e-6},
         "ln_vision_eps": 1e-5, "max_txt_len": 128,
         "qformer": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                     "max_position_embeddings": 40, "layer_norm_eps": 1e-12, "encoder_width": 48,
                     "cross_attention_freq": 2, "num_query_token": 8, "vocab_size": 120},
         "router": "soft", "experts": {"kind": "lora", "base": "llm", "members": [
             {"name": "theme", "path": "experts/theme", "instruction": "{instruction} Focus on the theme."},
             {"name": "objects", "path": "experts/objects", "instruction": "{instruction} Focus on the objects."}]},
         "aggregator": {"type": "fusion", "separator": " ", "template": "Join:\n{captions}\nCaption:",
                        "max_new_tokens": 16},
         "llm_bos": "</s>", "instruction": "Take a look at this image and describe what you notice."}
ADAPTER = {"base_model_name_or_path": "llm", "bias": "none", "fan_in_fan_out": False, "lora_alpha": 16,
           "lora_dropout": 0.0, "peft_type": "LORA", "r": 4, "target_modules": ["q_proj", "v_proj", "down_proj"],
           "rank_pattern": {"model.layers.1.self_attn.q_proj": 2}, "alpha_pattern": {"down_proj": 8},
           "layers_to_transform": [0, 1], "task_type": "CAUSAL_LM", "use_rslora": True}
INDEX = {"metadata": {"total_size": 1234}, "weight_map": {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors"}}


def main():
    os.makedirs(HERE, exist_ok=True)
    seeds = {"qwen2": (0, QWEN2), "llama3": (0, LLAMA3), "qwen2_moe": (0, QWEN2MOE), "mixtral": (0, MIXTRAL),
             "gmoe": (0, GMOE), "rsunivlm_tiny": (0, RSUNIVLM), "rsmoe_tiny": (0, RSMOE),
             "adapter_config": (0, ADAPTER), "index": (1, INDEX)}
    for name, (kind, doc) in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(bytes([kind]) + json.dumps(doc, indent=1).encode())
    print("wrote %d seeds to %s" % (len(seeds), HERE))


if __name__ == "__main__":
    main()
