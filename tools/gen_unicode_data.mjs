// Writes include/lm/unicode_data.hpp, the tables of include/lm/unicode.hpp, from the Unicode data
// of the Node that runs it (V8 + ICU): the tokenizers' reference is Hugging Face's JavaScript
// tokenizers, so every property, normalization and case mapping is taken from what that Node
// does, not from another copy of the UCD.
//
//   node tools/gen_unicode_data.mjs [OUT]      (default OUT: include/lm/unicode_data.hpp)
//
// No npm package is used: everything comes from String.prototype.normalize, toLowerCase and
// /\p{...}/u. JavaScript has no API for the canonical combining class, so it is measured: a mark
// is a non-starter when NFD reorders it against U+0334 (class 1) or U+0301 (class 230), and the
// non-starters are sorted by whether NFD swaps a pair of them. The table therefore holds the
// *rank* of each class (1, 2, ... in the order of the UCD values, equal classes equal), which is
// all that canonical ordering and composition blocking compare.
//
// Dev time only: the build never runs this script. tests/CMakeLists.txt's unicode_fixture runs
// tools/reference/unicode_reference.mjs, which checks the tables against the Node it finds.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? path.join(here, "..", "include", "lm", "unicode_data.hpp");
const N = 0x110000;
const S = (cp) => String.fromCodePoint(cp);
const cps = (s) => Array.from(s, (c) => c.codePointAt(0));
const isSurrogate = (cp) => cp >= 0xd800 && cp <= 0xdfff;
const isHangulSyllable = (cp) => cp >= 0xac00 && cp <= 0xd7a3;
const fail = (msg) => { console.error("gen_unicode_data: " + msg); process.exit(1); };

// ---- general category and flags -----------------------------------------------------------
const CATS = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
              "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"];
const catRe = CATS.map((c) => new RegExp(`^\\p{gc=${c}}$`, "u"));
const F = { letter: 1, number: 2, whitespace: 4, punctuation: 8, symbol: 16, mark: 32, mark_nonspacing: 64,
            control: 128, format: 256, separator: 512, other: 1024, cjk: 2048, lowercase: 4096, uppercase: 8192 };
const CJK = [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f], [0x2b740, 0x2b81f],
             [0x2b820, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f]];
const wsRe = /^\s$/u;

function catOf(s) {
  for (let i = 0; i < CATS.length; ++i) if (catRe[i].test(s)) return i;
  return -1;
}
function flagsOf(cp, s, cat) {
  const c = CATS[cat];
  let f = 0;
  if (c[0] === "L") f |= F.letter;
  if (c[0] === "N") f |= F.number;
  if (c[0] === "P") f |= F.punctuation;
  if (c[0] === "S") f |= F.symbol;
  if (c[0] === "M") f |= F.mark;
  if (c === "Mn") f |= F.mark_nonspacing;
  if (c === "Cc") f |= F.control;
  if (c === "Cf") f |= F.format;
  if (c[0] === "Z") f |= F.separator;
  if (c === "Cn" || c === "Co" || c === "Cs") f |= F.other;
  if (c === "Ll") f |= F.lowercase;
  if (c === "Lu") f |= F.uppercase;
  if (wsRe.test(s)) f |= F.whitespace;
  if (CJK.some(([a, b]) => cp >= a && cp <= b)) f |= F.cjk;
  return f;
}

// ---- canonical combining class (rank), measured through NFD's reordering -----------------
const nfd = (s) => s.normalize("NFD");
const nonStarters = [];
for (let cp = 0; cp < N; ++cp) {
  if (isSurrogate(cp) || isHangulSyllable(cp)) continue;
  const s = S(cp);
  if (nfd(s) !== s) continue;  // decomposing characters: their class is never asked for
  // ccc(c) > 1 swaps c with U+0334 (class 1); 0 < ccc(c) < 230 swaps U+0301 (230) with c.
  if (nfd(s + "\u0334") !== s + "\u0334" || nfd("\u0301" + s) !== "\u0301" + s) nonStarters.push(cp);
}
const before = (x, y) => x !== y && nfd(S(y) + S(x)) === S(x) + S(y);  // NFD swaps "y x": ccc(x) < ccc(y)
nonStarters.sort((x, y) => (before(x, y) ? -1 : before(y, x) ? 1 : x - y));
const ccc = new Map();
{
  let rank = 0;
  for (let i = 0; i < nonStarters.length; ++i) {
    if (i === 0 || before(nonStarters[i - 1], nonStarters[i])) ++rank;
    ccc.set(nonStarters[i], rank);
  }
  if (rank > 255) fail(`${rank} combining classes`);
  // The order must be a strict weak order: check every pair.
  for (const x of nonStarters)
    for (const y of nonStarters) {
      const r = ccc.get(x), q = ccc.get(y);
      if (before(x, y) !== (r < q)) fail(`inconsistent combining classes U+${x.toString(16)} U+${y.toString(16)}`);
    }
  console.error(`non-starters: ${nonStarters.length} in ${rank} classes`);
}
const cccOf = (cp) => ccc.get(cp) ?? 0;

// ---- decompositions, compositions, quick checks, lowercase -------------------------------
const decomp = [];  // [cp, nfd string, nfkd string]
const primary = [];  // composites that NFC produces (not Hangul)
for (let cp = 0; cp < N; ++cp) {
  if (isSurrogate(cp) || isHangulSyllable(cp)) continue;
  const s = S(cp);
  const d = s.normalize("NFD"), k = s.normalize("NFKD");
  if (d !== s || k !== s) decomp.push([cp, d, k]);
  if (d !== s && s.normalize("NFC") === s) primary.push(cp);
}
// The pair (a, b) of each primary composite c: the one with NFD(a) + NFD(b) == NFD(c) literally
// and NFC(a + b) == c (another split, e.g. U+1E61 + U+0323 for U+1E69, composes too, through
// reordering, but is not c's decomposition).
const pairs = [];
for (const c of primary) {
  const D = cps(nfd(S(c)));
  const found = [];
  for (let j = D.length - 1; j >= 0; --j) {
    const rest = String.fromCodePoint(...D.filter((_, i) => i !== j));
    const a = rest.normalize("NFC");
    if (cps(a).length !== 1) continue;
    const b = S(D[j]);
    if ((a + b).normalize("NFC") !== S(c)) continue;
    if (nfd(a) + nfd(b) !== nfd(S(c))) continue;
    if (!found.some((f) => f[0] === a.codePointAt(0) && f[1] === D[j])) found.push([a.codePointAt(0), D[j]]);
  }
  if (found.length !== 1) fail(`U+${c.toString(16)}: ${found.length} candidate pairs`);
  pairs.push([found[0][0], found[0][1], c]);
}
pairs.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
const combinesBack = new Set(pairs.map((p) => p[1]));
for (let cp = 0x1161; cp <= 0x1175; ++cp) combinesBack.add(cp);  // Hangul V
for (let cp = 0x11a8; cp <= 0x11c2; ++cp) combinesBack.add(cp);  // Hangul T
// Check the pairs against Node's NFC: a + b composes to c, and each b is a pair's second.
for (const [a, b, c] of pairs) if ((S(a) + S(b)).normalize("NFC") !== S(c)) fail("pair check");

const lower = [];  // [cp, string]
for (let cp = 0; cp < N; ++cp) {
  if (isSurrogate(cp)) continue;
  const s = S(cp), l = s.toLowerCase();
  if (l !== s) lower.push([cp, l]);
}

// Final_Sigma as V8 (ICU) sees it: "x Σ" ends in ς when x is a cased letter that is not
// case-ignorable; "A x Σ" ends in ς when x is case-ignorable (or cased).
const SIGMA_CASED = 1, SIGMA_IGNORABLE = 2;
function sigmaOf(s) {
  if ((s + "\u03a3").toLowerCase().endsWith("\u03c2")) return SIGMA_CASED;
  if (("A" + s + "\u03a3").toLowerCase().endsWith("\u03c2")) return SIGMA_IGNORABLE;
  return 0;
}

// ---- per code point records -----------------------------------------------------------------
// info bits: 0-4 category, 5-12 ccc rank, 13 nfd_no, 14 nfkd_no, 15 nfc_no, 16 nfc_maybe,
// 17 nfkc_no, 18 nfkc_maybe, 19 changes when lowercased, 20 sigma cased, 21 sigma ignorable
const recIndex = new Map(), recFlags = [], recInfo = [];
const perCp = new Uint16Array(N);
const decompSet = new Map(decomp.map((e) => [e[0], e]));
const lowerSet = new Set(lower.map((e) => e[0]));
for (let cp = 0; cp < N; ++cp) {
  const s = S(cp);
  const cat = catOf(s);
  if (cat < 0) fail(`U+${cp.toString(16)} has no general category`);
  const fl = flagsOf(cp, s, cat);
  let info = cat | (cccOf(cp) << 5);
  if (!isSurrogate(cp)) {
    const e = decompSet.get(cp);
    const hangul = isHangulSyllable(cp);
    if (hangul || (e && e[1] !== s)) info |= 1 << 13;
    if (hangul || (e && e[2] !== s)) info |= 1 << 14;
    if (s.normalize("NFC") !== s) info |= 1 << 15;
    if (combinesBack.has(cp)) info |= 1 << 16;
    const kc = s.normalize("NFKC");
    if (kc !== s) info |= 1 << 17;
    if (combinesBack.has(cp) && kc === s) info |= 1 << 18;
    if (lowerSet.has(cp)) info |= 1 << 19;
    const sg = sigmaOf(s);
    if (sg === SIGMA_CASED) info |= 1 << 20;
    if (sg === SIGMA_IGNORABLE) info |= 1 << 21;
  }
  const key = fl * 2 ** 32 + info;
  let r = recIndex.get(key);
  if (r === undefined) {
    r = recFlags.length;
    recIndex.set(key, r);
    recFlags.push(fl);
    recInfo.push(info);
  }
  perCp[cp] = r;
}
console.error(`records: ${recFlags.length}`);
if (recFlags.length > 65535) fail("too many records");

// Two-stage table: pick the block size with the smallest total.
function twoStage(shift) {
  const size = 1 << shift, blocks = new Map(), stage1 = [], stage2 = [];
  for (let b = 0; b < N / size; ++b) {
    const block = perCp.subarray(b * size, (b + 1) * size);
    const key = block.join(",");
    let id = blocks.get(key);
    if (id === undefined) {
      id = blocks.size;
      blocks.set(key, id);
      stage2.push(...block);
    }
    stage1.push(id);
  }
  return { shift, stage1, stage2, cost: stage1.length * 2 + stage2.length * (recFlags.length > 256 ? 2 : 1) };
}
let best = null;
for (let shift = 5; shift <= 9; ++shift) {
  const t = twoStage(shift);
  console.error(`block ${1 << shift}: ${t.stage1.length} + ${t.stage2.length} entries, ${t.cost} bytes`);
  if (!best || t.cost < best.cost) best = t;
}

// ---- pools ------------------------------------------------------------------------------------
const pool = [];
const poolIndex = new Map();
function intern(s) {
  const a = cps(s);
  const key = a.join(",");
  let off = poolIndex.get(key);
  if (off === undefined) {
    off = pool.length;
    pool.push(...a);
    poolIndex.set(key, off);
  }
  if (a.length > 31) fail("mapping longer than 31");
  return off * 32 + a.length;
}
const decompKeys = [], decompCanon = [], decompCompat = [];
for (const [cp, d, k] of decomp) {
  decompKeys.push(cp);
  decompCanon.push(d === S(cp) ? 0 : intern(d));
  decompCompat.push(intern(k));
}
const lowerKeys = [], lowerVals = [];
for (const [cp, l] of lower) {
  lowerKeys.push(cp);
  lowerVals.push(intern(l));
}
if (pool.length * 32 >= 2 ** 32) fail("pool too large");

// ---- write ------------------------------------------------------------------------------------
function arr(type, name, values, per = 20) {
  const lines = [];
  for (let i = 0; i < values.length; i += per) lines.push(values.slice(i, i + per).join(","));
  return `inline constexpr ${type} ${name}[${values.length}] = {\n${lines.join(",\n")}};\n`;
}
const hex = (v) => "0x" + v.toString(16);
const ver = process.versions.unicode;
const stage2Type = recFlags.length > 256 ? "std::uint16_t" : "std::uint8_t";
const text = `// GENERATED by \`node tools/gen_unicode_data.mjs\` from Unicode ${ver} (Node ${process.version}, ICU ${process.versions.icu}); no npm package. Do not edit.
// The tables of lm/unicode.hpp (see the generator for how
// each is measured). Per code point: record = stage2[(stage1[cp >> shift] << shift) | (cp & mask)];
// record_flags[record] is unicode::flags(cp), record_info[record] packs: bits 0-4 the general
// category, 5-12 the rank of the canonical combining class (order and equality of the UCD values,
// not the values), 13 NFD_QC=No, 14 NFKD_QC=No, 15 NFC_QC=No, 16 NFC_QC=Maybe, 17 NFKC_QC=No,
// 18 NFKC_QC=Maybe, 19 toLowerCase changes it, 20 cased and 21 case-ignorable for Final_Sigma.
// Mappings (full decomposition, lowercase) are (offset << 5 | length) into pool; decomp_canonical
// 0 = no canonical decomposition (compatibility only). Hangul syllables are algorithmic.
#pragma once

#include <cstdint>

namespace moe::lm::unicode::data {

inline constexpr char unicode_version[] = "${ver}";
inline constexpr unsigned block_shift = ${best.shift};
${arr("std::uint16_t", "stage1", best.stage1, 32)}${arr(stage2Type, "stage2", best.stage2, 40)}${arr("std::uint16_t", "record_flags", recFlags)}${arr("std::uint32_t", "record_info", recInfo.map(hex), 12)}${arr("std::uint32_t", "decomp_keys", decompKeys.map(hex), 14)}${arr("std::uint32_t", "decomp_canonical", decompCanon, 16)}${arr("std::uint32_t", "decomp_compat", decompCompat, 16)}${arr("std::uint32_t", "comp_keys_first", pairs.map((p) => hex(p[0])), 14)}${arr("std::uint32_t", "comp_keys_second", pairs.map((p) => hex(p[1])), 14)}${arr("std::uint32_t", "comp_values", pairs.map((p) => hex(p[2])), 14)}${arr("std::uint32_t", "lower_keys", lowerKeys.map(hex), 14)}${arr("std::uint32_t", "lower_values", lowerVals, 16)}${arr("char32_t", "pool", pool.map(hex), 14)}
}  // namespace moe::lm::unicode::data
`;
writeFileSync(out, text);
console.error(`wrote ${out}: ${text.length} bytes, ${decomp.length} decompositions, ${pairs.length} pairs, ${lower.length} lowercase mappings, pool ${pool.length}`);
