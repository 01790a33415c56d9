// Writes the reference that tests/unicode/test_unicode_reference.cpp compares lm/unicode.hpp with:
// what Node (V8 + ICU, the engine of Hugging Face's JavaScript tokenizers) says.
//
//   node tools/reference/unicode_reference.mjs OUT_DIR      -> OUT_DIR/unicode_reference.txt
//
// Exits 77 (ctest: skipped) when this Node's Unicode version (process.versions.unicode) is not
// the one include/lm/unicode_data.hpp was generated from: the comparison would then test the
// version difference, not the code.
//
// The file, one record a line, code points in hex, a sequence as space-separated code points:
//   V <unicode version>
//   P <first> <last> <flags> <category>   a range of code points with the same flags/category
//   M <form> <cp> : <sequence>            form C, D, KC, KD (normalize) or L (toLowerCase), for
//                                         every code point that the form changes
//   S <input> | <NFC> | <NFD> | <NFKC> | <NFKD> | <toLowerCase> | <NFD without \p{Mn}>
//                                         random strings (letters, marks of several classes,
//                                         Hangul jamo, Greek sigmas, case-ignorables, ...)
//   B <bytes> : <code points>             random byte strings and new TextDecoder().decode(bytes)
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2];
if (!outDir) {
  console.error("usage: node unicode_reference.mjs OUT_DIR");
  process.exit(2);
}
// A reference left by an earlier run must not be compared with tables it was not made for.
rmSync(path.join(outDir, "unicode_reference.txt"), { force: true });
const header = readFileSync(path.join(here, "..", "..", "include", "lm", "unicode_data.hpp"), "utf8");
const m = /unicode_version\[\] = "([^"]+)"/.exec(header);
const tables = m ? m[1] : "?";
if (process.versions.unicode !== tables) {
  console.log(`unicode reference: this node (${process.version}) has Unicode ${process.versions.unicode}, ` +
              `include/lm/unicode_data.hpp was generated from Unicode ${tables}: skipped ` +
              `(regenerate with node tools/gen_unicode_data.mjs, or use a node with Unicode ${tables})`);
  process.exit(77);
}

const N = 0x110000;
const S = (cp) => String.fromCodePoint(cp);
const hex = (cp) => cp.toString(16);
const seq = (s) => Array.from(s, (c) => hex(c.codePointAt(0))).join(" ");
const isSurrogate = (cp) => cp >= 0xd800 && cp <= 0xdfff;
const lines = [`V ${process.versions.unicode}`];

// ---- flags and categories, as ranges ---------------------------------------------------------
const CATS = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
              "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"];
const catRe = CATS.map((c) => new RegExp(`^\\p{gc=${c}}$`, "u"));
const flagRe = [[1, /^\p{L}$/u], [2, /^\p{N}$/u], [4, /^\s$/u], [8, /^\p{P}$/u], [16, /^\p{S}$/u],
                [32, /^\p{M}$/u], [64, /^\p{Mn}$/u], [128, /^\p{Cc}$/u], [256, /^\p{Cf}$/u],
                [512, /^\p{Z}$/u], [1024, /^[\p{Cn}\p{Co}\p{Cs}]$/u], [4096, /^\p{Ll}$/u], [8192, /^\p{Lu}$/u]];
const CJK = [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f], [0x2b740, 0x2b81f],
             [0x2b820, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f]];
let start = 0, prev = null;
for (let cp = 0; cp <= N; ++cp) {
  let key = null;
  if (cp < N) {
    const s = S(cp);
    let f = 0;
    for (const [bit, re] of flagRe) if (re.test(s)) f |= bit;
    if (CJK.some(([a, b]) => cp >= a && cp <= b)) f |= 2048;
    key = `${f} ${CATS.findIndex((_, i) => catRe[i].test(s))}`;
  }
  if (key !== prev) {
    if (prev !== null) lines.push(`P ${hex(start)} ${hex(cp - 1)} ${prev}`);
    start = cp;
    prev = key;
  }
}

// ---- single code points ------------------------------------------------------------------------
for (let cp = 0; cp < N; ++cp) {
  if (isSurrogate(cp)) continue;
  const s = S(cp);
  for (const form of ["NFC", "NFD", "NFKC", "NFKD"]) {
    const r = s.normalize(form);
    if (r !== s) lines.push(`M ${form.slice(2) || "C"} ${hex(cp)} : ${seq(r)}`);
  }
  const l = s.toLowerCase();
  if (l !== s) lines.push(`M L ${hex(cp)} : ${seq(l)}`);
}

// ---- random strings (deterministic) -----------------------------------------------------------
let seed = 0x5eed1234;
const rnd = () => {  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];
const range = (a, b) => () => a + Math.floor(rnd() * (b - a + 1));
const one = (...cps) => () => pick(cps);
const pools = [
  range(0x41, 0x5a), range(0x61, 0x7a), range(0xc0, 0xff), range(0x100, 0x17f), range(0x1e00, 0x1eff),
  range(0x300, 0x36f), range(0x300, 0x36f), range(0x591, 0x5c7), range(0x610, 0x61a), one(0x93c, 0x94d, 0x951),
  range(0xe38, 0xe3a), range(0x1dc0, 0x1dff), range(0x20d0, 0x20f0), range(0x302a, 0x302f), one(0x3099, 0x309a),
  range(0x1100, 0x1112), range(0x1161, 0x1175), range(0x11a8, 0x11c2), range(0xac00, 0xd7a3),
  one(0x3a3, 0x3c3, 0x3c2, 0x3a3, 0x3a3), range(0x391, 0x3a9), range(0x3b1, 0x3c9), range(0x1f00, 0x1fff),
  one(0x27, 0x2e, 0x3a, 0x5e, 0x60, 0xad, 0x345, 0x2b0, 0x200d, 0x2019), one(0x20, 0x3000, 0x2028, 0xa0),
  one(0xfb01, 0xfb02, 0x2460, 0x3300, 0xff21, 0xff41, 0x2126, 0x212b, 0x1e9e, 0x130, 0x131, 0x49, 0x69),
  range(0x4e00, 0x9fff), one(0x304b, 0x304f, 0x30cf, 0x30db, 0x3046), one(0xf900, 0x2f800, 0xfa10),
  one(0x0b47, 0x0b3e, 0x0b57, 0x0dd9, 0x0dcf, 0x0ddf, 0x1025, 0x102e, 0x113c2, 0x113b8, 0x16121, 0x1611e),
  range(0x1d15e, 0x1d164), range(0x10000, 0x10ffff), range(0x80, 0xfffd), range(0x1f600, 0x1f64f),
];
for (let n = 0; n < 5000; ++n) {
  const len = 1 + Math.floor(rnd() * 12);
  const a = [];
  for (let i = 0; i < len; ++i) {
    const cp = pick(pools)();
    if (!isSurrogate(cp)) a.push(cp);
  }
  if (!a.length) continue;
  const s = String.fromCodePoint(...a);
  const fields = [s, s.normalize("NFC"), s.normalize("NFD"), s.normalize("NFKC"), s.normalize("NFKD"),
                  s.toLowerCase(), s.normalize("NFD").replace(/\p{Mn}/gu, "")];
  lines.push("S " + fields.map(seq).join(" | "));
}

// ---- random byte strings through TextDecoder --------------------------------------------------
const dec = new TextDecoder();
const bytePools = [range(0x00, 0x7f), range(0x80, 0xbf), range(0x80, 0xbf), range(0x80, 0xbf), range(0xc0, 0xc3),
                   range(0xc2, 0xdf), range(0xe0, 0xef), one(0xe0, 0xed, 0xf0, 0xf4), range(0xf0, 0xf7),
                   range(0xf5, 0xff), one(0x9f, 0xa0, 0x8f, 0x90)];
for (let n = 0; n < 3000; ++n) {
  const len = 1 + Math.floor(rnd() * 10);
  const b = [];
  for (let i = 0; i < len; ++i) b.push(pick(bytePools)());
  const cps = Array.from(dec.decode(new Uint8Array(b)), (c) => c.codePointAt(0));
  lines.push(`B ${b.map(hex).join(" ")} : ${cps.map(hex).join(" ")}`);
}

mkdirSync(outDir, { recursive: true });
writeFileSync(path.join(outDir, "unicode_reference.txt.tmp"), lines.join("\n") + "\n");
renameSync(path.join(outDir, "unicode_reference.txt.tmp"), path.join(outDir, "unicode_reference.txt"));
console.log(`unicode reference: ${lines.length} lines written to ${path.join(outDir, "unicode_reference.txt")} (Unicode ${process.versions.unicode})`);
