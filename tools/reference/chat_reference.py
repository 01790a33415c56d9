#!/usr/bin/env python3
"""Reference prompts for moe::lm::ChatML ("qwen_1_5") and moe::lm::Vicuna11 ("vicuna_v1").

Mirrors the prompt building of LLaVA's conversation templates:
  repository  LLaVA-VL/LLaVA-NeXT (the LLaVA-NeXT / LLaVA-OneVision code RSUniVLM builds on)
  file        llava/conversation.py
  commit      b0eb49300f0a80723424e2c5cbb1bc54a9e5c3a0 (2025-05-05, the file's last change;
              identical at df179663ae8b83207df100a1f7af24caec633ff9, 2026-04-15). The parts
              mirrored here (Conversation.get_prompt for SeparatorStyle.TWO and .CHATML,
              conv_vicuna_v1, conv_qwen) are unchanged since 7315dc19 (2024-08-31).
  templates   conv_templates["qwen_1_5"] = conv_qwen   (CHATML, sep "<|im_end|>")
              conv_templates["vicuna_v1"] = conv_vicuna_v1 (TWO, sep " ", sep2 "</s>")
and the way LLaVA's inference code asks for a reply (docs/onevision_trial.py,
llava/eval/model_vqa.py, llava/serve/cli.py):
    conv = copy.deepcopy(conv_templates[name])
    conv.append_message(conv.roles[0], question)
    conv.append_message(conv.roles[1], None)      # the generation prompt
    prompt = conv.get_prompt()

Only the standard library is used (run with /usr/bin/python3). LLaVA's module imports torch-side
packages (PIL, transformers) at import time, so the class is re-written here, not imported; the
branch of get_prompt that handles (text, image, mode) tuples in messages[0] (the Gradio demo) is
left out: prompts built from strings never reach it.

Usage: chat_reference.py --out DIR   writes DIR/llava.json (cases from chat_cases.json beside
this script). Each result holds the case (messages, options) and the prompt LLaVA's code builds.
"""
import argparse
import copy
import json
import os
import sys

CHATML = "CHATML"
TWO = "TWO"


class Conversation:
    """The fields of LLaVA's Conversation dataclass that get_prompt reads for TWO and CHATML."""

    def __init__(self, system, roles, sep_style, sep, sep2=None, version="Unknown"):
        self.system = system
        self.roles = roles
        self.messages = []
        self.sep_style = sep_style
        self.sep = sep
        self.sep2 = sep2
        self.version = version

    def append_message(self, role, message):
        self.messages.append([role, message])

    def get_prompt(self):
        if self.sep_style == TWO:
            # System prompt and sep; each turn "ROLE: text" followed by sep (even positions) or
            # sep2 (odd positions); a turn whose text is falsy (None or "") is "ROLE:" alone.
            seps = [self.sep, self.sep2]
            ret = self.system + seps[0]
            for i, (role, message) in enumerate(self.messages):
                if message:
                    ret += role + ": " + message + seps[i % 2]
                else:
                    ret += role + ":"
            return ret
        if self.sep_style == CHATML:
            # System block unless the system string is empty; each turn "ROLE\ntext" + sep + "\n";
            # a turn whose text is falsy (None or "") is "ROLE\n" alone.
            ret = "" if self.system == "" else self.system + self.sep + "\n"
            for role, message in self.messages:
                if message:
                    ret += role + "\n" + message + self.sep + "\n"
                else:
                    ret += role + "\n"
            return ret
        raise ValueError("style not mirrored: %s" % self.sep_style)


# The two templates, field for field as llava/conversation.py defines them.
conv_vicuna_v1 = Conversation(
    system="A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    roles=("USER", "ASSISTANT"), version="v1", sep_style=TWO, sep=" ", sep2="</s>")

conv_qwen = Conversation(
    system="<|im_start|>system\nYou are a helpful assistant.",
    roles=("<|im_start|>user", "<|im_start|>assistant"), version="qwen", sep_style=CHATML, sep="<|im_end|>")

conv_templates = {"vicuna_v1": conv_vicuna_v1, "qwen_1_5": conv_qwen}

# LLaVA keeps the system prompt in Conversation.system, not in messages; conv_qwen's includes the
# ChatML header. A system prompt given with the conversation replaces the default text behind it.
SYSTEM_PREFIX = {"vicuna_v1": "", "qwen_1_5": "<|im_start|>system\n"}


def llava_prompt(template, messages, add_generation_prompt, system=None):
    conv = copy.deepcopy(conv_templates[template])
    if messages and messages[0]["role"] == "system":
        assert system is None, "system prompt given twice"
        system = messages[0]["content"]
        messages = messages[1:]
    if system is not None:
        conv.system = SYSTEM_PREFIX[template] + system
    for m in messages:
        assert m["role"] in ("user", "assistant"), m["role"]
        conv.append_message(conv.roles[0] if m["role"] == "user" else conv.roles[1], m["content"])
    if add_generation_prompt:
        conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for llava.json")
    ap.add_argument("--cases", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "chat_cases.json"))
    args = ap.parse_args()
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    results = []
    for template in ("qwen_1_5", "vicuna_v1"):
        for case in cases:
            results.append({
                "template": template,
                "case": case["name"],
                "messages": case["messages"],
                "add_generation_prompt": case["add_generation_prompt"],
                "system": case.get("system"),
                "prompt": llava_prompt(template, case["messages"], case["add_generation_prompt"], case.get("system")),
            })
    doc = {
        "reference": "LLaVA-VL/LLaVA-NeXT llava/conversation.py @ b0eb49300f0a80723424e2c5cbb1bc54a9e5c3a0: "
                     "Conversation.get_prompt (SeparatorStyle.TWO, .CHATML), conv_vicuna_v1, conv_qwen; "
                     "generation prompt = conv.append_message(conv.roles[1], None)",
        "renderer": "tools/reference/chat_reference.py",
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "llava.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("chat_reference.py: %d prompts written to %s" % (len(results), path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
