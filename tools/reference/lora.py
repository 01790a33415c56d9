"""LoRA adapters over tools/reference/hf_decoder.py's LLaMA / Qwen2 models, as PEFT builds and saves
them (no `peft` package here: Debian's torch 1.13 only; rewritten from peft's tuners/lora
(layer.py: LoraLayer, Linear; model.py: LoraModel; utils/save_and_load.py:
get_peft_model_state_dict), keeping its module and parameter names and its arithmetic).

API (importable; the RS-MoE reference builds on it):

    wrap = LoraLinear(base_linear, r, lora_alpha, use_rslora=False, lora_dropout=0.0,
                      adapter_name="default")
        peft.tuners.lora.Linear: .base_layer (the nn.Linear), .lora_A[name] = nn.Linear(in, r,
        bias=False), .lora_B[name] = nn.Linear(r, out, bias=False), .lora_dropout[name],
        .scaling[name] = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora), .r, .lora_alpha;
        forward(x) = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling (PEFT's order);
        delta_weight() = (B @ A) * scaling; merged() -> an nn.Linear equal to base + delta.
        Init as PEFT: A kaiming_uniform_(a=sqrt(5)), B zeros (init_lora_weights=True).

    names = apply_lora(model, target_modules, r, lora_alpha, use_rslora=False,
                       layers_to_transform=None, rank_pattern=None, alpha_pattern=None,
                       adapter_name="default")
        replaces, in place, every nn.Linear of model.model.layers[l] whose last name is in
        target_modules (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) by a
        LoraLinear; rank_pattern / alpha_pattern keys match a module's name (e.g.
        "model.layers.0.self_attn.q_proj") or a dotted suffix of it, first key first. Returns the
        wrapped module names.

    sd = lora_state_dict(model, prefix="base_model.model.", adapter_name="default",
                         keep_adapter_name=False)
        get_peft_model_state_dict's names: prefix + "model.layers.{l}.self_attn.q_proj.lora_A.weight"
        (with keep_adapter_name: "...lora_A.default.weight", as a full state dict names them; a
        LAVIS / RS-MoE checkpoint uses prefix "llm_model.base_model.model.").

    cfg = lora_config(target_modules, r, lora_alpha, use_rslora=False, **extra)
        the dict adapter_config.json holds (PEFT LoraConfig.to_dict's fields, peft_type "LORA").

    save_adapter(model, folder, config)   adapter_config.json (indent 2, sorted keys) and
                                          adapter_model.safetensors (metadata {"format": "pt"})
    load_adapter(model, folder)           the inverse: apply_lora from the config, then the weights
    merge_lora(model)                     folds every LoraLinear into its base (PEFT's
                                          merge_and_unload): plain nn.Linear modules again
"""

import json
import math
import os

import torch
import torch.nn as nn

from safetensors_io import load_file, save_file

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_PREFIX = "base_model.model."
LAVIS_PREFIX = "llm_model.base_model.model."


class LoraLinear(nn.Module):
    """peft.tuners.lora.layer.Linear over an nn.Linear (one adapter)."""

    def __init__(self, base_layer, r, lora_alpha, use_rslora=False, lora_dropout=0.0, adapter_name="default"):
        super().__init__()
        if r <= 0:
            raise ValueError("r must be positive, got %r" % (r,))
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.adapter_name = adapter_name
        self.r = {adapter_name: r}
        self.lora_alpha = {adapter_name: lora_alpha}
        self.scaling = {adapter_name: lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r}
        self.lora_dropout = nn.ModuleDict({adapter_name: nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()})
        self.lora_A = nn.ModuleDict({adapter_name: nn.Linear(self.in_features, r, bias=False)})
        self.lora_B = nn.ModuleDict({adapter_name: nn.Linear(r, self.out_features, bias=False)})
        nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[adapter_name].weight)

    def forward(self, x):
        a = self.adapter_name
        result = self.base_layer(x)
        return result + self.lora_B[a](self.lora_A[a](self.lora_dropout[a](x))) * self.scaling[a]

    def delta_weight(self):
        a = self.adapter_name
        return (self.lora_B[a].weight @ self.lora_A[a].weight) * self.scaling[a]

    def merged(self):
        lin = nn.Linear(self.in_features, self.out_features, bias=self.base_layer.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.base_layer.weight + self.delta_weight())
            if self.base_layer.bias is not None:
                lin.bias.copy_(self.base_layer.bias)
        return lin.to(self.base_layer.weight.dtype)


def _pattern(patterns, name, default):
    for k, v in (patterns or {}).items():
        if name == k or name.endswith("." + k):
            return v
    return default


def apply_lora(model, target_modules, r, lora_alpha, use_rslora=False, layers_to_transform=None,
               rank_pattern=None, alpha_pattern=None, adapter_name="default"):
    """Wraps the targeted Linears of model (a hf_decoder.DecoderForCausalLM) in place."""
    if isinstance(target_modules, str):
        target_modules = list(TARGETS) if target_modules == "all-linear" else [target_modules]
    for t in target_modules:
        if t not in TARGETS:
            raise ValueError("unsupported target module %r" % (t,))
    if isinstance(layers_to_transform, int):
        layers_to_transform = [layers_to_transform]
    names = []
    for l, layer in enumerate(model.model.layers):
        if layers_to_transform is not None and l not in layers_to_transform:
            continue
        for parent_name, parent in (("self_attn", layer.self_attn), ("mlp", getattr(layer, "mlp", None))):
            if parent is None:
                continue
            for t in TARGETS:
                if t in target_modules and isinstance(getattr(parent, t, None), nn.Linear):
                    name = "model.layers.%d.%s.%s" % (l, parent_name, t)
                    rr = _pattern(rank_pattern, name, r)
                    aa = _pattern(alpha_pattern, name, lora_alpha)
                    setattr(parent, t, LoraLinear(getattr(parent, t), rr, aa, use_rslora, adapter_name=adapter_name))
                    names.append(name)
    if not names:
        raise ValueError("no module matched target_modules %r" % (target_modules,))
    return names


def lora_modules(model):
    """(name, LoraLinear) of the model, name as in the base model ("model.layers.0.mlp.up_proj")."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLinear)]


def lora_state_dict(model, prefix=PEFT_PREFIX, adapter_name="default", keep_adapter_name=False):
    out = {}
    for n, m in lora_modules(model):
        for ab in ("lora_A", "lora_B"):
            key = "%s%s.%s%s.weight" % (prefix, n, ab, "." + adapter_name if keep_adapter_name else "")
            out[key] = getattr(m, ab)[m.adapter_name].weight.detach().clone().contiguous()
    return out


def lora_config(target_modules, r, lora_alpha, use_rslora=False, **extra):
    """adapter_config.json's dict, as PEFT's LoraConfig writes it (the fields moe reads plus the
    usual others)."""
    d = {
        "alpha_pattern": {},
        "auto_mapping": None,
        "base_model_name_or_path": None,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": lora_alpha,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": {},
        "revision": None,
        "target_modules": list(target_modules) if not isinstance(target_modules, str) else target_modules,
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": use_rslora,
    }
    d.update(extra)
    return d


def save_adapter(model, folder, config, dtype=torch.float32):
    """PeftModel.save_pretrained's two files."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = {k: v.to(dtype) for k, v in lora_state_dict(model).items()}
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"), {"format": "pt"})
    return tensors


def load_adapter(model, folder):
    """apply_lora from folder's adapter_config.json, then its weights (strict: every name used)."""
    with open(os.path.join(folder, "adapter_config.json")) as f:
        c = json.load(f)
    if c.get("peft_type") != "LORA":
        raise ValueError("not a LoRA adapter")
    apply_lora(model, c["target_modules"], c["r"], c["lora_alpha"], c.get("use_rslora", False),
               c.get("layers_to_transform"), c.get("rank_pattern"), c.get("alpha_pattern"))
    tensors = load_file(os.path.join(folder, "adapter_model.safetensors"))
    expected = lora_state_dict(model)
    if set(tensors) != set(expected):
        raise ValueError("adapter names differ: missing %s, unexpected %s"
                         % (sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))))
    mods = dict(lora_modules(model))
    with torch.no_grad():
        for k, v in tensors.items():
            stem, ab, _ = k[len(PEFT_PREFIX):].rsplit(".", 2)
            w = getattr(mods[stem], ab)[mods[stem].adapter_name].weight
            if w.shape != v.shape:
                raise ValueError("%s: shape %s, expected %s" % (k, tuple(v.shape), tuple(w.shape)))
            w.copy_(v.to(w.dtype))
    return model


def merge_lora(model):
    """merge_and_unload: every LoraLinear replaced by its merged nn.Linear."""
    for name, m in lora_modules(model):
        parent = model.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, name.rsplit(".", 1)[1], m.merged())
    return model
