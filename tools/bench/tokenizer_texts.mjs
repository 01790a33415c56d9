#!/usr/bin/env node
// Writes the tokenizer benchmark texts, ~1 MB (UTF-8) each, from real text, deterministically:
//   english.txt  Debian's licence texts and package copyright files: /usr/share/common-licenses/*
//                (base-files: on every Debian 12 machine; symlinked duplicates read once), then
//                /usr/share/doc/<pkg>/copyright for the packages scripts/install-deps.sh installs,
//                then every other /usr/share/doc/*/copyright in name order; paragraphs already
//                taken are skipped (licences repeat), so the text varies.
//   chinese.txt  the npm package chinese-poetry@2.0.1 (MIT; pinned in tools/reference/npm):
//                论语 (Lunyu, simplified), 古文观止 (Guwen Guanzhi, classical prose), 四书 (Daxue,
//                Zhongyong, Mengzi), the biographies of the Tang and Song poets (modern written
//                Chinese, traditional characters), then Song poems.
//   mixed.txt    paragraphs interleaved in a seeded order: English and Chinese from the above,
//                code (@lenml/tokenizers' src/tokenizers/tokenizers.js, pinned), numbers,
//                emoji sequences and remote-sensing prompts (tools/reference/tokenizer_corpus.mjs).
// The sources it used are printed and written in OUT/SOURCES.txt. On the same Debian package
// versions and npm pins the files are byte-identical.
//
//   node tools/bench/tokenizer_texts.mjs --out DIR [--npm-dir DIR] [--bytes N]

import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { remoteSensingPrompts, EMOJI_SAMPLES } from "../reference/tokenizer_corpus.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let out = null, npmDir = process.env.MOE_NPM_DIR ?? join(process.env.HOME ?? "", ".cache/moe/npm"), target = 1_000_000;
for (let i = 0; i < args.length; ++i) {
  if (args[i] === "--out") out = args[++i];
  else if (args[i] === "--npm-dir") npmDir = args[++i];
  else if (args[i] === "--bytes") target = Number(args[++i]);
  else { console.error("usage: tokenizer_texts.mjs --out DIR [--npm-dir DIR] [--bytes N]"); process.exit(2); }
}
if (!out) { console.error("usage: tokenizer_texts.mjs --out DIR [--npm-dir DIR] [--bytes N]"); process.exit(2); }
out = resolve(out);
npmDir = resolve(npmDir);
const modules = join(npmDir, "node_modules");
for (const p of ["chinese-poetry", "@lenml/tokenizers"]) {
  if (!existsSync(join(modules, p, "package.json"))) {
    console.error(`tokenizer_texts: ${p} not installed in ${modules} (scripts/install-deps.sh, or --npm-dir)`);
    process.exit(77);
  }
}
const bytes = (s) => Buffer.byteLength(s, "utf8");
const sources = { english: [], chinese: [], mixed: [] };

// Takes paragraphs (blank-line separated, whitespace inside kept) until `target` bytes.
function collect(name, files, read, into, seen) {
  let total = into.reduce((a, p) => a + bytes(p) + 2, 0);
  for (const f of files) {
    if (total >= target) break;
    let took = 0;
    for (const para of read(f)) {
      const key = para.trim();
      if (!key || seen.has(key)) continue;
      seen.add(key);
      into.push(para);
      total += bytes(para) + 2;
      ++took;
      if (total >= target) break;
    }
    if (took) sources[name].push(`${f} (${took} paragraphs)`);
  }
  return total;
}

// --- English -----------------------------------------------------------------------------------
const splitParas = (text) => text.replace(/\r\n/g, "\n").split(/\n[ \t]*\n/);
const english = [];
{
  const seen = new Set(), files = [], real = new Set();
  const add = (f) => { if (!existsSync(f)) return; const r = realpathSync(f); if (real.has(r) || !statSync(r).isFile()) return; real.add(r); files.push(f); };
  for (const f of readdirSync("/usr/share/common-licenses").sort()) add(join("/usr/share/common-licenses", f));
  const installDeps = readFileSync(join(here, "../../scripts/install-deps.sh"), "utf8");
  const aptList = (installDeps.match(/packages=\(([\s\S]*?)\n\)/)?.[1] ?? "").split("\n").filter((l) => !l.trim().startsWith("#")).join(" ").split(/\s+/).filter(Boolean);
  for (const p of aptList) add(`/usr/share/doc/${p}/copyright`);
  if (existsSync("/usr/share/doc")) for (const d of readdirSync("/usr/share/doc").sort()) add(`/usr/share/doc/${d}/copyright`);
  collect("english", files, (f) => splitParas(readFileSync(f, "utf8")), english, seen);
}

// --- Chinese -----------------------------------------------------------------------------------
const chinese = [];
{
  const cp = join(modules, "chinese-poetry/dist");
  const textOf = (node, acc = []) => {
    if (typeof node === "string") return acc;
    if (Array.isArray(node)) { for (const x of node) textOf(x, acc); return acc; }
    if (node && typeof node === "object") {
      for (const [k, v] of Object.entries(node)) {
        if (k === "paragraphs" && Array.isArray(v)) acc.push(v.filter((x) => typeof x === "string").join("\n"));
        else if ((k === "desc" || k === "abstract") && typeof v === "string") acc.push(v);
        else if (k === "abstract" && Array.isArray(v)) acc.push(v.join("\n"));
        else textOf(v, acc);
      }
    }
    return acc;
  };
  const files = ["lunyu/lunyu.json", "mengxue/guwenguanzhi.json", "sishuwujing/daxue.json", "sishuwujing/zhongyong.json",
                 "sishuwujing/mengzi.json", "quantangshi/authors.tang.json", "quantangshi/authors.song.json",
                 "quantangshi/poet.song.0.json", "quantangshi/poet.song.1000.json"].map((f) => join(cp, f));
  collect("chinese", files, (f) => textOf(JSON.parse(readFileSync(f, "utf8"))), chinese, new Set());
}

// --- mixed ---------------------------------------------------------------------------------------
// mulberry32, as in the corpus
function rng(seed) { let a = seed >>> 0; return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
const mixed = [];
{
  const r = rng(7);
  const int = (n) => Math.floor(r() * n);
  const codeFile = join(modules, "@lenml/tokenizers/src/tokenizers/tokenizers.js");
  const code = splitParas(readFileSync(codeFile, "utf8")).filter((p) => p.trim());
  const prompts = remoteSensingPrompts(11, 4000);
  const counters = { english: 0, chinese: 0, code: 0, numbers: 0, emoji: 0, prompts: 0 };
  let total = 0, e = 0, c = 0, k = 0, p = 0;
  while (total < target) {
    let para;
    switch (int(6)) {
      case 0: para = english[e++ % english.length]; ++counters.english; break;
      case 1: para = chinese[c++ % chinese.length]; ++counters.chinese; break;
      case 2: para = code[k++ % code.length]; ++counters.code; break;
      case 3: {
        const n = [];
        for (let i = 0, m = 3 + int(12); i < m; ++i) {
          const len = 1 + int(16);
          let d = ""; for (let j = 0; j < len; ++j) d += int(10);
          n.push(int(4) === 0 ? `${d}.${int(1000)}` : int(5) === 0 ? `-${d}` : d);
        }
        para = n.join(int(2) ? ", " : " "); ++counters.numbers; break;
      }
      case 4: {
        const em = [];
        for (let i = 0, m = 1 + int(8); i < m; ++i) em.push(EMOJI_SAMPLES[int(EMOJI_SAMPLES.length)]);
        para = `${english[int(english.length)].split("\n")[0].slice(0, 80)} ${em.join(int(2) ? "" : " ")}`; ++counters.emoji; break;
      }
      default: para = prompts[p++ % prompts.length]; ++counters.prompts; break;
    }
    mixed.push(para);
    total += bytes(para) + 2;
  }
  sources.mixed.push(`English and Chinese paragraphs as above; code: ${codeFile}; numbers, emoji and remote-sensing prompts (seeded); paragraphs: ${JSON.stringify(counters)}`);
}

mkdirSync(out, { recursive: true });
const lines = [];
for (const [name, paras] of [["english", english], ["chinese", chinese], ["mixed", mixed]]) {
  const text = paras.join("\n\n") + "\n";
  writeFileSync(join(out, `${name}.txt`), text);
  lines.push(`${name}.txt: ${bytes(text)} bytes, ${paras.length} paragraphs, from:`);
  for (const s of sources[name]) lines.push(`  ${s}`);
}
writeFileSync(join(out, "SOURCES.txt"), lines.join("\n") + "\n");
// stdout: each file, its first sources, and where the full list is
for (const [name, paras] of [["english", english], ["chinese", chinese], ["mixed", mixed]]) {
  const list = sources[name];
  console.log(`${join(out, name + ".txt")}: ${bytes(paras.join("\n\n") + "\n")} bytes from ${list.length} source(s): ${list.slice(0, 4).join("; ")}${list.length > 4 ? `; ... (${list.length - 4} more)` : ""}`);
}
console.log(`all sources: ${join(out, "SOURCES.txt")}`);
