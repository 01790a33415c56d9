#!/usr/bin/env node
// The tokenizer parity corpus: a deterministic (seeded PRNG) list of strings written to catch the
// places where tokenizer.json implementations disagree — Unicode normalisation (composed and
// decomposed forms, canonical singletons), the pre-tokenizer regexes (contractions in every case,
// digits, runs of whitespace), byte-level fallbacks (emoji, astral planes, control characters),
// added/special tokens inside text, and the prompts the remote-sensing models use.
//
//   node tools/reference/tokenizer_corpus.mjs [--seed N] [--stats] [--out FILE.jsonl]
//   import { tokenizerCorpus, SPECIAL_TOKENS } from "./tokenizer_corpus.mjs"
//
// tokenizerCorpus() returns [{category, text}] (no duplicates, every text well-formed UTF-16,
// i.e. valid Unicode: no lone surrogates). The same seed always gives the same list; changing a
// generator changes the fixtures, so CORPUS_VERSION is written into them.

export const CORPUS_VERSION = 1;
export const DEFAULT_SEED = 20240611;

// Every added token of the tokenizers the reference covers (tools/reference/tokenizer_reference.mjs
// checks that each loaded tokenizer.json has no added token missing from this list).
const llama3Reserved = Array.from({ length: 251 }, (_, i) => `<|reserved_special_token_${i}|>`);
export const SPECIAL_TOKENS = {
  "qwen3": [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
  ],
  "llama2": ["<unk>", "<s>", "</s>"],
  "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eot_id|>", ...llama3Reserved],
  "gpt2": ["<|endoftext|>"],
  "bert-uncased": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
};

// --- PRNG: mulberry32 (32-bit state, good enough and identical everywhere) --------------------
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(seed) { this.next = mulberry32(seed); }
  int(n) { return Math.floor(this.next() * n); }            // [0, n)
  range(lo, hi) { return lo + this.int(hi - lo + 1); }       // [lo, hi]
  pick(a) { return a[this.int(a.length)]; }
  chance(p) { return this.next() < p; }
  digits(n) { let s = ""; for (let i = 0; i < n; ++i) s += String.fromCharCode(48 + this.int(10)); return s; }
  shuffle(a) { for (let i = a.length - 1; i > 0; --i) { const j = this.int(i + 1); [a[i], a[j]] = [a[j], a[i]]; } return a; }
}

// --- text banks --------------------------------------------------------------------------------
const ENGLISH = [
  "The quick brown fox jumps over the lazy dog.",
  "It was the best of times, it was the worst of times.",
  "Sentinel-2 acquires 13 spectral bands at 10, 20 and 60 m ground sampling distance.",
  "A synthetic aperture radar sees through clouds, smoke and the dark of night.",
  "The harbour was full of container ships, and three tugboats waited near the breakwater.",
  "Tokenizers split text into pieces; models only ever see the pieces' ids.",
  "She didn't know whether the bridge in the north-east corner had been rebuilt after the flood.",
  "We'll need the near-infrared band to tell healthy vegetation from bare soil.",
  "He said, \"Don't touch the orthomosaic until the GCPs are checked.\"",
  "Mixture-of-experts layers route each token to the top-k of N feed-forward networks.",
  "In 1972 the first Landsat satellite began its long record of the Earth's surface.",
  "Roads, rivers and railways are thin, long objects: hard to segment at low resolution.",
  "Hello, world! How are you today?",
  "E-mail me at someone@example.com or visit https://example.org/path?q=1&lang=en#top.",
  "The U.S.A. and the U.K. signed the agreement on Jan. 5th, 2021 at 3:45 p.m.",
  "Is this the real life? Is this just fantasy?",
  "Ms. O'Neil's dog—a spaniel—barked at the mail-carrier… twice.",
  "Wait... what?! That's impossible!!!",
  "Whose airport is this? I think I know: its runway runs from the town to the sea.",
  "Clouds cover about two thirds of the planet at any given moment.",
  "The farmland is divided into rectangular fields of wheat, maize and sunflowers.",
  "There are 7 airplanes parked on the apron and 2 more taxiing toward runway 09L.",
  "I'm sure you're right, but they've already left and we'd better hurry.",
  "Y'all can't've done that, ain't it?",
  "C'est la vie — said the naïve café owner in Zürich, façade and all.",
  "Supercalifragilisticexpialidocious is a long word, but pneumonoultramicroscopicsilicovolcanoconiosis is longer.",
  "ALL CAPS TEXT SHOULD TOKENIZE DIFFERENTLY FROM lower case text.",
  "camelCaseIdentifiers and snake_case_identifiers and kebab-case-identifiers.",
  "The temperature dropped to -40°, which is the same in Celsius and Fahrenheit.",
  "Coordinates: 48°51′24″N 2°21′03″E, elevation 35 m.",
  "Price: $1,299.99 (was €1.499,00); tax ¥12,000 or £9.50.",
  "The ratio was 3:2, the odds 1-in-1000, and the error ±0.5%.",
  "Footnote¹ and superscript² and subscript H₂O and fraction ½.",
  "The satellite's orbit is sun-synchronous, with a revisit time of five days.",
  "Floods spread over the plain; the river left its bed near the village of Aldeia Nova.",
  "Two storage tanks, one white and one grey, stand beside the refinery.",
];
const CHINESE = [
  "我爱北京天安门，天安门上太阳升。",
  "遥感影像中可以看到一座风车和一条蜿蜒的河流。",
  "今天天气很好，我们去公园散步吧。",
  "人工智能正在改变我们的生活方式。",
  "这张卫星图像显示了城市的扩张和农田的减少。",
  "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
  "混合专家模型把每个词元路由到少数几个前馈网络。",
  "机场跑道的北侧停着三架飞机，南侧有一个储油罐。",
  "學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？",
  "臺灣的高鐵從臺北到高雄只需要九十分鐘。",
  "请描述这张图片中的建筑物、道路和植被。",
  "他说：“明天见！”然后就走了。",
  "数字123和字母ABC混在中文里。",
  "港口里停满了集装箱船，防波堤附近还有三艘拖船。",
  "洪水淹没了平原，河流在村庄附近改道。",
  "一、二、三、四、五，上山打老虎。",
  "《红楼梦》是中国古典四大名著之一。",
  "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
  "合成孔径雷达可以穿透云层，在夜间成像。",
  "请在图中找出所有的桥梁，并给出它们的坐标。",
];
const JAPANESE = [
  "東京は日本の首都です。",
  "この衛星画像には風車と川が写っています。",
  "吾輩は猫である。名前はまだ無い。",
  "ひらがなとカタカナと漢字を混ぜて書きます。",
  "コンピューターで自然言語処理を研究しています。",
  "今日はいい天気ですね！",
  "ｶﾀｶﾅの半角文字もあります。",
  "「こんにちは」と彼女は言った。",
  "富士山の高さは3776メートルです。",
  "滑走路の北側に飛行機が三機停まっています。",
  "ヴァイオリンとヴィオラ、ガ行とパ行。",
  "𠮷野家で牛丼を食べました。",
];
const KOREAN = [
  "안녕하세요, 만나서 반갑습니다.",
  "이 위성 사진에는 풍차와 강이 보입니다.",
  "대한민국의 수도는 서울입니다.",
  "한국어는 한글로 씁니다.",
  "활주로 북쪽에 비행기 세 대가 있습니다.",
  "오늘 날씨가 정말 좋네요!",
];
const OTHER_SCRIPTS = [
  // Arabic (with and without harakat), Persian, Hebrew (with niqqud)
  "مرحبا بالعالم", "اللُّغَةُ العَرَبِيَّةُ جَمِيلَةٌ", "صورة القمر الصناعي تظهر طاحونة هواء ونهرًا.",
  "سلام دنیا، حال شما چطور است؟", "שלום עולם", "בְּרֵאשִׁית בָּרָא אֱלֹהִים", "תמונת הלוויין מראה טחנת רוח.",
  // Devanagari (virama, nukta; U+0958 is a composition exclusion), Bengali, Tamil
  "नमस्ते दुनिया", "यह उपग्रह चित्र एक पवनचक्की दिखाता है।", "क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़", "क\u093C ख\u093C",
  "হ্যালো বিশ্ব", "வணக்கம் உலகம்",
  // Thai (no spaces between words), Lao, Khmer, Myanmar
  "สวัสดีชาวโลก", "ภาพถ่ายดาวเทียมแสดงกังหันลมและแม่น้ำ", "ສະບາຍດີ", "សួស្តី​ពិភពលោក", "မင်္ဂလာပါ",
  // Greek (final sigma; tonos), Cyrillic, Armenian, Georgian, Ethiopic
  "ΟΔΥΣΣΕΥΣ", "Ὀδυσσεύς", "Σίσυφος και ο βράχος", "ΣΟΦΟΣ ΑΝΘΡΩΠΟΣ", "ΑΣ", "σ ς Σ", "Η ΓΗ ΕΙΝΑΙ ΣΤΡΟΓΓΥΛΗ.",
  "Привет, мир! Как дела?", "СЪЕШЬ ЖЕ ЕЩЁ ЭТИХ МЯГКИХ ФРАНЦУЗСКИХ БУЛОК", "Բարեւ աշխարհ", "გამარჯობა მსოფლიო", "ሰላም ለዓለም",
  // Vietnamese (stacked diacritics), Turkish dotted/dotless i, German sharp s
  "Tiếng Việt có nhiều dấu: ệ ở ữ ặ ỗ.", "İstanbul ve ıspanak, DİYARBAKIR", "Straße, STRASSE, ẞ",
];
// Accented Latin in NFC and NFD forms, and canonical singletons NFC rewrites.
const LATIN_PAIRS = [
  ["café", "cafe\u0301"], ["naïve", "nai\u0308ve"], ["Ångström", "A\u030Angstro\u0308m"],
  ["résumé", "re\u0301sume\u0301"], ["señor", "sen\u0303or"], ["Zürich", "Zu\u0308rich"],
  ["façade", "fac\u0327ade"], ["Ærøskøbing", "Ærøskøbing"], ["Dvořák", "Dvor\u030Ca\u0301k"],
  ["Łódź", "Ło\u0301dz\u0301"], ["São Paulo", "Sa\u0303o Paulo"], ["Việt Nam", "Vie\u0323\u0302t Nam"],
  ["Ǆ ǅ ǆ", "D\u017D D\u017E d\u017E"], ["ḍ̇", "d\u0323\u0307"], ["ḍ̇", "d\u0307\u0323"],
];
const SINGLETONS = [
  "\u212B (Angstrom sign)", "\u2126 (Ohm sign)", "\u212A (Kelvin sign)", "\u1FFD", "\u2000\u2001",
  "\u0340\u0341", "\u0374;\u037E", "\u2329\u232A", "\uF900\uF901\uFA10", "\u0958\u0959",
];

const EMOJI = [
  "😀", "😂", "🥲", "❤️", "❤", "✨", "🔥", "👍", "🎉", "🚀", "🛰️", "🛰", "🌍", "🗺️", "🌧️", "⛰️", "🏭",
  "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "👋🏽", "🧑🏿‍🚀",
  "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "👩🏽‍💻", "🧑‍🔬", "👁️‍🗨️", "🐻‍❄️", "❤️‍🔥",
  "🇺🇸", "🇨🇳", "🇯🇵", "🇰🇷", "🇩🇪", "🇫🇷", "🇧🇷", "🇮🇳", "🇪🇺", "🇺🇳", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🏴󠁧󠁢󠁥󠁮󠁧󠁿",
  "1️⃣", "#️⃣", "*️⃣", "©️", "®", "™️", "🅰️", "🆗",
];
const ZERO_WIDTH = ["\u200B", "\u200C", "\u200D", "\u2060", "\uFEFF", "\u00AD", "\u034F", "\uFE0F", "\uFE0E",
                    "\u200E", "\u200F", "\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067",
                    "\u2068", "\u2069", "\u180E", "\u061C"];
const SPACES = [" ", "\t", "\n", "\r\n", "\r", "\u000B", "\u000C", "\u00A0", "\u1680", "\u2002", "\u2003",
                "\u2007", "\u2009", "\u200A", "\u202F", "\u205F", "\u3000", "\u0085", "\u2028", "\u2029"];
const APOSTROPHES = ["'", "\u2019", "\u2018", "\u02BC", "\uFF07", "`", "\u00B4", "\u2032"];
const CONTRACTION_SUFFIXES = ["s", "t", "re", "ve", "m", "ll", "d"];
const CONTRACTION_WORDS = ["it", "don", "they", "we", "I", "she", "you", "would", "can", "Bob", "the cat"];
const COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030A", "\u0323", "\u0327", "\u0338",
                   "\u20DD", "\u0489", "\u1AB0", "\u1DC0", "\u3099", "\u309A", "\u093C", "\u0E31", "\u05B7"];

const PYTHON = [
  "def forward(self, x):\n    return self.fc2(self.act(self.fc1(x)))\n",
  "import numpy as np\nx = np.zeros((3, 224, 224), dtype=np.float32)\nprint(x.shape)  # (3, 224, 224)\n",
  "for i, (k, v) in enumerate(d.items()):\n\tif v is None:\n\t\tcontinue\n\tyield f\"{k}={v!r}\"\n",
  "class Router(nn.Module):\n    \"\"\"Top-k router.\"\"\"\n\n    def __init__(self, dim: int, n: int) -> None:\n        super().__init__()\n",
  "lambda x: x ** 2 if x >= 0 else -x // 3 % 7\n",
  "    \n        \n\n\n    pass\r\n",
  "s = '''multi\nline''' + r\"\\raw\\path\" + b'\\x00\\xff'.hex()\n",
];
const CPP = [
  "#include <vector>\nint main() {\n    std::vector<int> v{1, 2, 3};\n    return v.size() == 3 ? 0 : 1;\n}\n",
  "template <typename T>\nconstexpr T clamp(T x, T lo, T hi) noexcept { return x < lo ? lo : (hi < x ? hi : x); }\n",
  "auto [it, ok] = map.try_emplace(key, std::move(value));\nif (!ok) { it->second += 1; }\n",
  "for (std::size_t i = 0; i < n; ++i) {\n\tout[i] = a[i] * b[i] + c[i];\n}\n",
  "static_assert(sizeof(float) == 4, \"float must be 32-bit\");\n// TODO(moe): SIMD path\n/* block\n   comment */\n",
  "std::cout << \"Hello, \" << name << \"!\\n\";\n",
];
const JSON_SNIPPETS = [
  "{\"name\": \"moe\", \"version\": \"0.1.0\", \"tags\": [\"c++\", \"moe\"], \"ok\": true, \"n\": null}",
  "{\n  \"type\": \"FeatureCollection\",\n  \"features\": [{\"type\": \"Feature\", \"geometry\": {\"type\": \"Point\", \"coordinates\": [102.0, 0.5]}}]\n}",
  "[1, 2.5, -3e-7, 1E+10, \"\\u00e9\\n\\t\", {\"a\": {}}, []]",
  "{\"bbox\": [45, 13, 49, 21], \"label\": \"windmill\", \"score\": 0.987}",
];

const RS_OBJECTS = ["windmill", "airplane", "ship", "storage tank", "bridge", "harbor", "roundabout", "baseball diamond",
                    "tennis court", "basketball court", "ground track field", "swimming pool", "helicopter", "vehicle",
                    "large vehicle", "small vehicle", "dam", "stadium", "train station", "overpass", "golf course",
                    "chimney", "expressway toll station", "wind turbine", "solar panel", "greenhouse", "river", "runway"];
const RS_TASKS = ["[VG]", "[SEG]", "[CAP]", "[REFER]", "[GROUNDING]", "[DET]", "[CLS]", "[VQA]", "[identify]", "[refer]"];
const RS_QUESTIONS = [
  "Where is the {o}?", "Segment the {o}.", "Describe the image.", "How many {o}s are there?",
  "Is there a {o} in the image?", "Give the bounding box of the {o} near the {p}.", "What is the land use of this area?",
  "Classify this scene.", "Describe the image in detail.", "Which {o} is closest to the {p}?",
  "Count the {o}s in the top-left quadrant.", "Is the {o} larger than the {p}?",
];

// --- the generators -----------------------------------------------------------------------------
function caseVariants(s) {
  // every upper/lower combination of a short ASCII string ("ll" -> ll lL Ll LL)
  const out = [];
  for (let mask = 0; mask < 1 << s.length; ++mask) {
    out.push([...s].map((c, i) => (mask >> i) & 1 ? c.toUpperCase() : c.toLowerCase()).join(""));
  }
  return out;
}

function bbox(r) {
  const x0 = r.int(90), y0 = r.int(90);
  return [x0, y0, Math.min(100, x0 + 1 + r.int(20)), Math.min(100, y0 + 1 + r.int(20))];
}

function rsPrompt(r) {
  const o = r.pick(RS_OBJECTS), p = r.pick(RS_OBJECTS);
  const q = r.pick(RS_QUESTIONS).replaceAll("{o}", o).replaceAll("{p}", p);
  const b = bbox(r);
  switch (r.int(12)) {
    case 0: return `[VG] ${q} [${b.join(", ")}]`;
    case 1: return `${r.pick(RS_TASKS)} ${q}`;
    case 2: return `<image>\n${q}`;
    case 3: return `<image>\n${r.pick(RS_TASKS)} ${q}`;
    case 4: return `<|im_start|>user\n<image>\n${r.pick(RS_TASKS)} ${q}<|im_end|>\n<|im_start|>assistant\n`;
    case 5: return `<|im_start|>system\nYou are a helpful remote sensing assistant.<|im_end|>\n<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\nThe ${o} is at [${b.join(", ")}].<|im_end|>\n`;
    case 6: return `[refer] give me the location of <p>${o}</p> {<${b[0]}><${b[1]}><${b[2]}><${b[3]}>|<${r.int(90)}>}`;
    case 7: return `<|vision_start|><|image_pad|><|image_pad|><|vision_end|>${q}`;
    case 8: return `<|object_ref_start|>${o}<|object_ref_end|><|box_start|>(${b[0] * 10},${b[1] * 10}),(${b[2] * 10},${b[3] * 10})<|box_end|>`;
    case 9: return `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<image>\n${q}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`;
    case 10: return `[CAP] ${r.pick(ENGLISH)}`;
    default: return `[SEG] <image> ${q} <SEG> [${b.join(",")}]`;
  }
}

function randomFrom(r, bank, min, max) {
  const n = r.range(min, max);
  const parts = [];
  for (let i = 0; i < n; ++i) parts.push(r.pick(bank));
  return parts;
}

function number(r, len) {
  // len digits; the first may be 0 (zero-padded ids are real data too)
  return r.digits(len);
}

// Code points from ranges whose assignment has been stable for many Unicode versions (so that
// \p{L}, \p{N} agree between ICU, Oniguruma and Rust's tables).
const STABLE_RANGES = [
  [0x20, 0x7e], [0xa1, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff], [0x900, 0x97f],
  [0xe00, 0xe5b], [0x1100, 0x11ff], [0x2000, 0x206f], [0x2190, 0x23ff], [0x2500, 0x27bf], [0x3000, 0x30ff],
  [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0xff01, 0xffef], [0x1f300, 0x1f64f], [0x1d400, 0x1d7ff],
];
function randomCodepoints(r, n) {
  let s = "";
  for (let i = 0; i < n; ++i) {
    const [lo, hi] = r.pick(STABLE_RANGES);
    s += String.fromCodePoint(r.range(lo, hi));
  }
  return s;
}

export function tokenizerCorpus({ seed = DEFAULT_SEED } = {}) {
  const r = new Rng(seed);
  const out = [];
  const seen = new Set();
  const add = (category, text) => {
    if (typeof text !== "string") throw new Error(`corpus: not a string in ${category}`);
    if (!text.isWellFormed()) throw new Error(`corpus: lone surrogate in ${category}: ${JSON.stringify(text)}`);
    if (seen.has(text)) return;
    seen.add(text);
    out.push({ category, text });
  };

  // -- edge cases: empty, single characters, whitespace only
  add("edge", "");
  for (let c = 0; c < 128; ++c) add("edge", String.fromCharCode(c));
  for (const s of SPACES) { add("edge", s); add("edge", s + s); }
  for (const s of ["a", "A", "ab", "I", "é", "中", "😀", "\uFFFD", "\u0301", "Ġ", "Ċ", "▁", "▁▁", "##", "##ing",
                   "<0x41>", "<0x0A>", "Ġhello", "▁hello", "hello▁world", "\u00ff\u00fe", "\u0100"]) add("edge", s);

  // -- English prose
  for (const s of ENGLISH) { add("english", s); add("english", s.toUpperCase()); add("english", s.toLowerCase()); }
  for (let i = 0; i < 900; ++i) {
    let s = randomFrom(r, ENGLISH, 1, 4).join(r.pick([" ", " ", "  ", "\n", "\n\n", "\t"]));
    if (r.chance(0.1)) s = s.toUpperCase();
    add("english", s);
  }

  // -- CJK and other scripts
  for (const [cat, bank] of [["chinese", CHINESE], ["japanese", JAPANESE], ["korean", KOREAN], ["scripts", OTHER_SCRIPTS]]) {
    for (const s of bank) add(cat, s);
    const n = { chinese: 700, japanese: 450, korean: 300, scripts: 600 }[cat];
    for (let i = 0; i < n; ++i) add(cat, randomFrom(r, bank, 1, 3).join(r.pick(["", " ", "\n", "", " "])));
  }
  // Korean: conjoining jamo (NFC composes them into syllables) and compatibility jamo (it does not)
  for (let i = 0; i < 120; ++i) {
    const L = 0x1100 + r.int(19), V = 0x1161 + r.int(21), T = r.chance(0.5) ? String.fromCharCode(0x11a8 + r.int(27)) : "";
    add("korean", `${String.fromCharCode(L, V)}${T} ${r.pick(KOREAN)} ${String.fromCharCode(0x3131 + r.int(51))}`);
  }
  // Japanese: dakuten as combining marks (NFC: か+゛ -> が), halfwidth forms, astral kanji
  for (let i = 0; i < 100; ++i) {
    const base = String.fromCharCode(r.pick([0x304b, 0x304d, 0x304f, 0x3053, 0x3055, 0x305f, 0x306f, 0x30ab, 0x30cf, 0x30a6]));
    add("japanese", `${base}\u3099${base}\u309A ${r.pick(JAPANESE)} ｶﾞｷﾞｸﾞ${base}`);
  }

  // -- accented Latin: composed vs decomposed, singletons, combining sequences in different orders
  for (const [nfc, nfd] of LATIN_PAIRS) {
    add("latin", nfc); add("latin", nfd); add("latin", `${nfc} ${nfd}`); add("latin", nfc.toUpperCase());
    add("latin", nfd.toUpperCase()); add("latin", `The ${nfd}'s test.`);
  }
  for (const s of SINGLETONS) { add("latin", s); add("latin", `x${s}y`); }
  for (let i = 0; i < 600; ++i) {
    const [nfc, nfd] = r.pick(LATIN_PAIRS);
    add("latin", `${r.pick(ENGLISH).slice(0, r.range(5, 40))} ${r.chance(0.5) ? nfc : nfd} ${r.pick(SINGLETONS)}`);
  }
  // Greek final sigma in every position (lowercasing tokenizers: Σ -> ς at the end of a word)
  for (const w of ["ΟΔΥΣΣΕΥΣ", "ΣΟΦΟΣ", "ΑΣ", "Σ", "ΣΑ", "ΑΣΑ", "ΌΣΟΣ", "ΑΣ.", "ΑΣ!", "ΑΣ1", "ΑΣ'Σ", "Σ̈"]) {
    add("greek", w); add("greek", `${w} ${w}`); add("greek", `(${w})`); add("greek", `λ${w}`);
  }

  // -- emoji
  for (const e of EMOJI) { add("emoji", e); add("emoji", `${e}${e}`); add("emoji", `I ${e} it`); }
  for (let i = 0; i < 700; ++i) {
    const parts = randomFrom(r, EMOJI, 1, 6);
    add("emoji", r.chance(0.5) ? parts.join("") : `${r.pick(ENGLISH).slice(0, r.range(0, 30))}${parts.join(r.pick(["", " "]))}${r.pick(CHINESE).slice(0, r.range(0, 8))}`);
  }

  // -- code
  for (const s of [...PYTHON, ...CPP, ...JSON_SNIPPETS]) { add("code", s); add("code", s.replaceAll("    ", "\t")); add("code", s.replaceAll("\n", "\r\n")); }
  for (let i = 0; i < 500; ++i) {
    const s = randomFrom(r, r.pick([PYTHON, CPP, JSON_SNIPPETS]), 1, 3).join(r.pick(["\n", "\n\n", "", "\r\n"]));
    add("code", r.chance(0.2) ? "    ".repeat(r.range(1, 4)) + s : s);
  }

  // -- numbers: every length 1..40, decimals, signs, separators, other digit sets
  for (let len = 1; len <= 40; ++len) {
    for (let k = 0; k < 6; ++k) {
      const n = number(r, len);
      add("numbers", n);
      add("numbers", `${r.pick(["x", "The", "id", "Δ", "数", ""])} ${n} ${r.pick(["m", "km²", "px", "元", "", "%"])}`);
      add("numbers", `${n}.${number(r, r.range(1, 12))}`);
    }
    add("numbers", "1".repeat(len)); add("numbers", "0".repeat(len)); add("numbers", "9".repeat(len));
  }
  for (let i = 0; i < 400; ++i) {
    switch (r.int(10)) {
      case 0: add("numbers", `-${number(r, r.range(1, 8))}.${number(r, r.range(1, 8))}e${r.pick(["-", "+", ""])}${r.range(0, 300)}`); break;
      case 1: add("numbers", `${r.range(1, 999)},${number(r, 3)},${number(r, 3)}.${number(r, 2)}`); break;
      case 2: add("numbers", `${r.range(1900, 2099)}-${String(r.range(1, 12)).padStart(2, "0")}-${String(r.range(1, 28)).padStart(2, "0")}T${number(r, 2)}:${number(r, 2)}:${number(r, 2)}Z`); break;
      case 3: add("numbers", `v${r.range(0, 20)}.${r.range(0, 99)}.${r.range(0, 999)}`); break;
      case 4: add("numbers", `+1 (${number(r, 3)}) ${number(r, 3)}-${number(r, 4)}`); break;
      case 5: add("numbers", [..."٠١٢٣٤٥٦٧٨٩"].slice(0, r.range(1, 10)).join("") + " " + "１２３４５６７８９０".slice(0, r.range(1, 10))); break;
      case 6: add("numbers", `${"०१२३४५६७८९".slice(0, r.range(1, 10))} ${"๐๑๒๓๔๕๖๗๘๙".slice(0, r.range(1, 10))} Ⅻ ⅳ ① ⑳ ¼ ²³`); break;
      case 7: add("numbers", `${r.range(0, 100)}%, ${r.range(0, 10)}/${r.range(1, 10)}, 0x${number(r, 4)}FF, 0b1011, 1_000_000`); break;
      case 8: add("numbers", `${number(r, r.range(1, 40))}${r.pick(["abc", "中文", " ", "", "😀", "."])}${number(r, r.range(1, 40))}`); break;
      default: add("numbers", `[${number(r, 2)}, ${number(r, 2)}, ${number(r, 3)}, ${number(r, 3)}]`); break;
    }
  }

  // -- whitespace: runs, tabs, newlines, \r\n, leading/trailing, unusual spaces
  for (let n = 1; n <= 24; ++n) {
    add("whitespace", " ".repeat(n)); add("whitespace", `a${" ".repeat(n)}b`); add("whitespace", `${" ".repeat(n)}a`);
    add("whitespace", `a${" ".repeat(n)}`); add("whitespace", "\n".repeat(n)); add("whitespace", "\r\n".repeat(n));
    add("whitespace", "\t".repeat(n)); add("whitespace", `x\n${" ".repeat(n)}y`); add("whitespace", `x${" ".repeat(n)}\ny`);
  }
  for (let i = 0; i < 700; ++i) {
    let s = "";
    const k = r.range(1, 8);
    for (let j = 0; j < k; ++j) {
      s += r.chance(0.5) ? r.pick(SPACES).repeat(r.range(1, 5)) : r.pick(["word", "Hello", "中文", "123", "!", "it's", "😀", "é", "x"]);
    }
    add("whitespace", s);
    add("whitespace", `${r.pick(SPACES).repeat(r.range(1, 3))}${r.pick(ENGLISH)}${r.pick(SPACES).repeat(r.range(1, 3))}`);
  }

  // -- contractions in every case, apostrophe variants
  for (const suffix of CONTRACTION_SUFFIXES) {
    for (const v of caseVariants(suffix)) {
      for (const a of APOSTROPHES) {
        add("contractions", `${a}${v}`);
        add("contractions", `${r.pick(CONTRACTION_WORDS)}${a}${v}`);
        add("contractions", `${r.pick(CONTRACTION_WORDS).toUpperCase()}${a}${v} ok`);
        add("contractions", ` ${a}${v} ${a}${v}${a}${v}`);
      }
    }
  }
  for (let i = 0; i < 300; ++i) {
    const a = r.pick(APOSTROPHES), v = r.pick(caseVariants(r.pick(CONTRACTION_SUFFIXES)));
    add("contractions", `${r.pick(CONTRACTION_WORDS)}${a}${v} ${r.pick(ENGLISH)}${r.chance(0.3) ? " " + a : ""}`);
  }
  for (const s of ["''", "'''", "' s", "'s'", "rock'n'roll", "'tis", "o'clock", "'99", "l'été", "'ll'll", "don'T", "I'M", "we'RE"]) add("contractions", s);

  // -- zero-width, control characters, U+FFFD, lone combining marks, private use, astral planes
  for (const z of ZERO_WIDTH) { add("invisible", z); add("invisible", `a${z}b`); add("invisible", `${z}hello${z}`); add("invisible", `中${z}文`); }
  for (let c = 0; c < 32; ++c) { add("control", `a${String.fromCharCode(c)}b`); add("control", `${String.fromCharCode(c)} x`); }
  for (let c = 0x7f; c <= 0x9f; ++c) add("control", `a${String.fromCharCode(c)}b`);
  for (const s of ["\uFFFD", "\uFFFD\uFFFD", "a\uFFFDb", "\uFFFD é \uFFFD", "\uE000\uE001\uF8FF", "\uFFFE\uFFFF",
                   "\u{10FFFF}", "\u{F0000}", "\u{E0041}\u{E007F}", "\u{1D11E}\u{1D400}\u{10330}\u{20000}\u{2A6D6}", "\u{1F600}\u{1F9FF}"]) add("invisible", s);
  for (const m of COMBINING) {
    add("combining", m); add("combining", `${m}${m}${m}`); add("combining", ` ${m}`); add("combining", `a${m}`);
    add("combining", `${m}a`); add("combining", `1${m}`); add("combining", `\n${m}x`); add("combining", `中${m}`);
  }
  for (let i = 0; i < 150; ++i) {
    let s = "";
    for (let j = 0, n = r.range(1, 12); j < n; ++j) s += r.pick(["a", "e", "o", "Z", " ", "σ", "и", ...COMBINING]) + (r.chance(0.5) ? r.pick(COMBINING) : "");
    add("combining", s);
  }
  for (let i = 0; i < 250; ++i) add("random", randomCodepoints(r, r.range(1, 40)));

  // -- very long words (500+ characters) and long runs
  const longs = [
    "a".repeat(600), "ab".repeat(300), "x".repeat(1000), "A".repeat(520), "z".repeat(99), "z".repeat(100), "z".repeat(101),
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft".repeat(7),
    "中".repeat(600), "国人".repeat(300), "😀".repeat(200), "👨‍👩‍👧‍👦".repeat(50), "1".repeat(600), "1234567890".repeat(60),
    " ".repeat(600), "\n".repeat(300), "\t".repeat(300), "=".repeat(500), "-".repeat(500), ".".repeat(500),
    "é".repeat(300), "e\u0301".repeat(300), "\u0301".repeat(300), "ا".repeat(500), "к".repeat(500),
    "'s".repeat(300), "<|".repeat(300), "a-b_".repeat(150), "https://example.org/" + "very/long/path/".repeat(40),
  ];
  for (const s of longs) add("long", s);
  for (let i = 0; i < 40; ++i) {
    let s = "";
    while (s.length < 500 + r.int(300)) s += String.fromCharCode(97 + r.int(26));
    add("long", s);
    add("long", `${r.pick(ENGLISH)} ${s.toUpperCase()} ${r.pick(CHINESE)}`);
  }
  for (let i = 0; i < 10; ++i) {
    const b64 = Array.from({ length: 700 }, () => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[r.int(64)]).join("");
    add("long", `data:image/png;base64,${b64}==`);
  }

  // -- every special/added token inside text, with and without spaces, doubled, nearly matched
  const allSpecial = [...new Set(Object.values(SPECIAL_TOKENS).flat())];
  for (const t of allSpecial) {
    add("special", t);
    add("special", `hello${t}world`);
    add("special", `hello ${t} world`);
    if (/^<\|reserved_special_token_\d+\|>$/.test(t) && !t.endsWith("_0|>") && !t.endsWith("_250|>")) continue; // 249 alike
    add("special", ` ${t}`);
    add("special", `${t} `);
    add("special", `${t}${t}`);
    add("special", `${t}\n${r.pick(ENGLISH)}`);
    add("special", `${r.pick(CHINESE)}${t}${r.pick(JAPANESE)}`);
    add("special", t.slice(0, -1));                  // not a token: one character short
    add("special", t.toLowerCase() === t ? t.toUpperCase() : t.toLowerCase());
  }
  for (let i = 0; i < 300; ++i) {
    const parts = [];
    for (let j = 0, n = r.range(2, 6); j < n; ++j) {
      parts.push(r.chance(0.5) ? r.pick(allSpecial) : r.pick([...ENGLISH, ...CHINESE, "", " ", "\n", "  "]).slice(0, r.range(0, 30)));
    }
    add("special", parts.join(r.pick(["", " ", "\n"])));
  }

  // -- remote-sensing prompts
  for (const s of ["[VG] Where is the windmill? [45, 13, 49, 21]", "[SEG]", "[CAP]", "<image>\nDescribe the image.",
                   "<|im_start|>user\nDescribe the image.<|im_end|>", "<|im_start|>user\n<image>\n[VG] Where is the windmill?<|im_end|>\n<|im_start|>assistant\n[45, 13, 49, 21]<|im_end|>"]) add("remote_sensing", s);
  for (let i = 0; i < 1200; ++i) add("remote_sensing", rsPrompt(r));

  // -- mixed: random concatenations of everything above
  const pools = [ENGLISH, CHINESE, JAPANESE, KOREAN, OTHER_SCRIPTS, EMOJI, PYTHON, CPP, JSON_SNIPPETS, SPACES,
                 ZERO_WIDTH, APOSTROPHES, allSpecial, LATIN_PAIRS.flat(), SINGLETONS];
  for (let i = 0; i < 1000; ++i) {
    const parts = [];
    for (let j = 0, n = r.range(2, 7); j < n; ++j) {
      const k = r.int(pools.length + 2);
      if (k === pools.length) parts.push(number(r, r.range(1, 12)));
      else if (k === pools.length + 1) parts.push(rsPrompt(r));
      else parts.push(r.pick(pools[k]));
    }
    add("mixed", parts.join(r.pick(["", " ", "\n", " ", "\t", "\r\n"])));
  }
  return out;
}

// n remote-sensing prompts ([VG] ..., [SEG], <image>, ChatML turns) for the benchmark texts.
export function remoteSensingPrompts(seed, n) {
  const r = new Rng(seed);
  return Array.from({ length: n }, () => rsPrompt(r));
}
export const EMOJI_SAMPLES = EMOJI;

export function corpusStats(corpus) {
  const counts = {};
  for (const { category } of corpus) counts[category] = (counts[category] ?? 0) + 1;
  return counts;
}

// --- CLI ------------------------------------------------------------------------------------------
import { fileURLToPath } from "node:url";
import { writeFileSync } from "node:fs";
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  let seed = DEFAULT_SEED, out = null, stats = false;
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === "--seed") seed = Number(args[++i]);
    else if (args[i] === "--out") out = args[++i];
    else if (args[i] === "--stats") stats = true;
    else { console.error(`usage: tokenizer_corpus.mjs [--seed N] [--stats] [--out FILE.jsonl] (unknown: ${args[i]})`); process.exit(2); }
  }
  const corpus = tokenizerCorpus({ seed });
  if (out) writeFileSync(out, corpus.map((e) => JSON.stringify(e)).join("\n") + "\n");
  const chars = corpus.reduce((a, e) => a + e.text.length, 0);
  console.log(`tokenizer corpus v${CORPUS_VERSION} (seed ${seed}): ${corpus.length} strings, ${chars} UTF-16 units`);
  if (stats || !out) for (const [k, v] of Object.entries(corpusStats(corpus))) console.log(`  ${k.padEnd(16)} ${v}`);
}
