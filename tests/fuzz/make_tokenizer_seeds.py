#!/usr/bin/python3
"""Writes the seed corpora of the tokenizer fuzzers: tests/fuzz/corpus/{tokenizer_json,
tokenizer_encode,regex}/.

Python standard library only; run from anywhere with /usr/bin/python3 (the files are
deterministic, so rerunning it changes nothing unless this script changed):

    /usr/bin/python3 tests/fuzz/make_tokenizer_seeds.py

tokenizer_json/ (fuzz_tokenizer_json.cpp): small but complete tokenizer.json files of each
family the loader supports, laid out as the Hugging Face tokenizers library writes them, each
optionally followed by a NUL byte and a tokenizer_config.json:
  bytelevel-*   byte-level BPE as Qwen2 (NFC, Split regex + ByteLevel(use_regex=false), ByteLevel
                post-processor and decoder) and GPT-2 (ByteLevel(use_regex=true), "a b" merges);
  spm-*         SentencePiece-style BPE as LLaMA-2 (Prepend/Replace normalizer, byte_fallback,
                fuse_unk, Replace/ByteFallback/Fuse/Strip decoders, TemplateProcessing <s>);
  wordpiece-*   BERT (BertNormalizer, BertPreTokenizer, TemplateProcessing, WordPiece decoder);
  near-*        truncated or corrupted variants (one defect each).
Each has a vocabulary of tens of tokens (the byte-level one has the 256 byte symbols) and a few
merges. tokenizer_encode/ (fuzz_tokenizer_encode.cpp): text in several scripts, added tokens,
combining marks, invalid UTF-8. regex/ (fuzz_regex.cpp): pattern NUL subject.
Every file is under 4 KB.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seedlib import write_seeds  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def byte_table():
    """GPT-2's bytes_to_unicode: byte -> printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTES = byte_table()


def bl(text):
    """A string as its byte-level symbols."""
    return "".join(BYTES[b] for b in text.encode("utf-8"))


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def added(content, id_, special=True, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": False, "special": special}


def bytelevel_model(words, full_bytes=True, merge_style="pairs"):
    """vocab: the byte symbols (all 256, or only those the words use) + merged words."""
    vocab = {}
    if full_bytes:
        for b in range(256):
            vocab[BYTES[b]] = b
    else:
        for ch in sorted(set("".join(bl(w) for w in words))):
            vocab[ch] = len(vocab)
    merges = []
    for w in words:  # left-to-right merges building each word
        s = bl(w)
        cur = s[0]
        for ch in s[1:]:
            if cur + ch not in vocab:
                merges.append([cur, ch])
                vocab[cur + ch] = len(vocab)
            cur += ch
    if merge_style == "strings":
        merges = [f"{a} {b}" for a, b in merges]
    return {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": merges}


def qwen2(full_bytes=True):
    model = bytelevel_model([" the", "in", " a", "er", "on", "中文", " t"], full_bytes)
    n = len(model["vocab"])
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added("<|endoftext|>", n), added("<|im_start|>", n + 1), added("<|im_end|>", n + 2),
                         added("<tool_call>", n + 3, special=False)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": model,
    }


QWEN2_CONFIG = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                "unk_token": None, "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                "clean_up_tokenization_spaces": False, "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer"}


def gpt2():
    model = bytelevel_model([" the", "he", " a", "in"], full_bytes=False, merge_style="strings")
    n = len(model["vocab"])
    return {
        "version": "1.0", "added_tokens": [added("<|endoftext|>", n)], "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": model,
    }


def spm(byte_fallback=True):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in [0x0A, 0x20, 0x80, 0x96, 0x98, 0x9F, 0xAD, 0xB8, 0xBD, 0xBF, 0xE2, 0xE4, 0xEF, 0xF0]:
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t in ["▁", "a", "b", "c", "e", "h", "l", "o", "t", "中", "▁t", "▁th", "he", "▁the", "ll", "▁hello", "el", "ello"]:
        vocab.setdefault(t, len(vocab))
    merges = [["▁", "t"], ["▁t", "h"], ["h", "e"], ["▁th", "e"], ["l", "l"], ["e", "l"], ["el", "lo"] if "ello" in vocab else ["e", "l"]]
    merges = [m for m in merges if m[0] + m[1] in vocab]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added("<unk>", 0), added("<s>", 1), added("</s>", 2)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": byte_fallback,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


LLAMA_CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": {"content": "<s>", "lstrip": False},
                "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "clean_up_tokenization_spaces": False,
                "legacy": False, "tokenizer_class": "LlamaTokenizer"}


def bert(lowercase=True, strip_accents=None):
    vocab = {}
    for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", ",", ".", "'", "a", "b", "the", "un", "##aff", "##able",
              "aff", "hello", "##lo", "hel", "world", "中", "文", "cafe", "##s", "##e", "1", "##2", "é"]:
        vocab[t] = len(vocab)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(t, vocab[t]) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": strip_accents, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [], "special_tokens": {}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


BERT_CONFIG = {"do_lower_case": True, "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
               "pad_token": "[PAD]", "unk_token": "[UNK]", "tokenizer_class": "BertTokenizer"}


def tokenizer_json_seeds():
    s = {}
    s["bytelevel-qwen2"] = dump(qwen2())
    s["bytelevel-qwen2-config"] = dump(qwen2()) + b"\0" + dump(QWEN2_CONFIG)
    q = qwen2(full_bytes=False)
    q["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_SPLIT
    s["bytelevel-llama3-small"] = dump(q)
    s["bytelevel-gpt2"] = dump(gpt2())
    s["spm-llama2"] = dump(spm())
    s["spm-llama2-config"] = dump(spm()) + b"\0" + dump(LLAMA_CONFIG)
    s["spm-no-byte-fallback"] = dump(spm(byte_fallback=False))
    s["wordpiece-bert"] = dump(bert())
    s["wordpiece-bert-config"] = dump(bert()) + b"\0" + dump(BERT_CONFIG)
    s["wordpiece-cased-strip"] = dump(bert(lowercase=False, strip_accents=True))
    # near-*: one defect each.
    full = dump(spm())
    s["near-truncated"] = full[: len(full) * 2 // 3]
    s["near-truncated-bytelevel"] = dump(qwen2(full_bytes=False))[:900]
    bad = spm()
    bad["model"]["merges"].append("nospace")
    s["near-merge-no-space"] = dump(bad)
    bad = spm()
    bad["model"]["unk_token"] = "<missing>"
    s["near-unk-not-in-vocab"] = dump(bad)
    bad = bert()
    bad["model"]["type"] = "Unigram"
    s["near-unigram"] = dump(bad)
    bad = bert()
    bad["post_processor"]["single"][0]["SpecialToken"]["id"] = "[NOPE]"
    s["near-template-unknown-token"] = dump(bad)
    bad = qwen2(full_bytes=False)
    bad["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"(?<=a)b|\p{L}+"
    s["near-lookbehind"] = dump(bad)
    bad = qwen2(full_bytes=False)
    bad["added_tokens"][0]["id"] = 1 << 30
    s["near-added-id-huge"] = dump(bad)
    s["near-config-not-object"] = dump(bert()) + b"\0[1,2]"
    s["near-sparse-ids"] = dump({"model": {"type": "BPE", "vocab": {"a": 0, "b": 7, "ab": 40}, "merges": [["a", "b"]]},
                                 "decoder": {"type": "Fuse"}})
    return s


def tokenizer_encode_seeds():
    texts = {
        "ascii": "Hello, world! It's the 2nd time we've met.\n",
        "chat": "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "cjk": "中文分词 テスト 한국어",
        "emoji": "I 😀 🇫🇷 👩\u200d💻!",
        "combining": "cafe\u0301 A\u030a \u1e9b\u0323 e<tool_call>\u0301",
        "whitespace": "  a\t\tb \r\n\r\n  \u00a0\u3000x   ",
        "invalid": b"ab\xff\xc3(\xe4\xb8 \xf0\x9f\x98 \xed\xa0\x80z\x80",
        "digits-punct": "12345 3.14 !!! ??? ...--- $$$ (x) [y] {z}",
        "bert": "UNaffable! Hello WORLD, caf\u00e9 [MASK] [CLS]",
    }
    return {name: t if isinstance(t, bytes) else t.encode("utf-8") for name, t in texts.items()}


def regex_seeds():
    subject = "Hello, world! it's 2024\n\t  中文 café 😀 I'LL  ab12__x\r\n   end"
    pats = {
        "qwen2": QWEN2_SPLIT,
        "gpt2": GPT2_SPLIT,
        "llama3-digits": r"\p{N}{1,3}",
        "classes": r"[^\s\p{L}\p{N}]+|\s+(?!\S)",
        "icase": r"(?i:'s|'ll|ab)",
        "lazy": r"a.*?b|\d+?x",
        "lookahead": r"\w+(?=\s)|(?!\d)\w",
        "anchors": r"^\s*\S+|\S+$",
        "counted": r"(?:ab|c){2,3}|[a-f]{1,4}",
        "escapes": r"\x41|\u00e9|\u{1F600}|[\t\n\r]|\.",
        "props": r"\p{Lu}\p{Ll}*|\P{L}",
        "empty-alt": r"|a",
        "unsupported-backref": r"(a)\1",
        "unsupported-lookbehind": r"(?<=a)b",
    }
    return {name: p.encode("utf-8") + b"\0" + subject.encode("utf-8") for name, p in pats.items()}


def main():
    write_seeds(os.path.join(HERE, "corpus", "tokenizer_json"), tokenizer_json_seeds())
    write_seeds(os.path.join(HERE, "corpus", "tokenizer_encode"), tokenizer_encode_seeds())
    write_seeds(os.path.join(HERE, "corpus", "regex"), regex_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
