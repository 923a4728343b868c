"""Make tests/golden/loops_tiny.{json,safetensors}: a 2-loop generation as the reference Open-Sora v1.2.0 runs it.

The modules are tiny and random (this project's STDiT3, its tiny v1.2 VAE and the tests' word-hash text encoder; their
weights go into the safetensors file so the test rebuilds exactly them). The generation around them is the reference's
own code, read from a git mirror at the tag (tools/reference_v1_2.py): the prompt steps of scripts/inference.py
(`split_prompt`, `append_score_to_prompts`, `text_preprocessing`, `merge_prompt`, `extract_prompts_loop`),
`prepare_multi_resolution_info`, `append_generated`, `apply_mask_strategy` with `align`, `dframe_to_frame`, and the
RFLOW sampler (opensora/schedulers/rf), in the order scripts/inference.py calls them, seeded once as its
`set_random_seed` seeds torch. Usage:

    python tools/golden_loops.py [--repo MIRROR] [--out-dir tests/golden]
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests"), str(ROOT)]
import reference_v1_2 as R  # noqa: E402

CASE = dict(prompts=["A Red Circle moving LEFT", "a blue square (slowly)", "Green star @home"], seed=42, batch_size=2,
            image_size=[16, 16], num_frames=34, fps=24, loops=2, condition_frame_length=5, condition_frame_edit=0.0, align=5,
            aes=6.5, num_sampling_steps=3, cfg_scale=4.0, use_timestep_transform=True, multi_resolution="STDiT2")
#: narrower than chapter 03's tiny VAE (same structure: 4x spatial and temporal compression, 17-frame chunks), to keep the file small
VAE_2D = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4, block_out_channels=[8, 16, 16],
              down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3, act_fn="silu", sample_size=32,
              mid_block_add_attention=False)
VAE_TEMPORAL = dict(in_out_channels=4, latent_embed_dim=4, embed_dim=4, filters=8, num_res_blocks=1, channel_multipliers=[1, 2, 2, 2],
                    temporal_downsample=[False, True, True], num_groups=4)
MODEL = dict(hidden_size=32, depth=2, num_heads=2, patch_size=[1, 2, 2], caption_channels=16, model_max_length=8,
             pred_sigma=True, input_sq_size=32)


def build(seed=0):
    "The tiny random modules (this project's classes): STDiT3, the tiny v1.2 VAE (it samples its posteriors), word-hash text."
    from opensora_nb.stdit import STDiT3
    from opensora_nb.vae import tiny_vae_v1_2
    from toy_text import HashText
    torch.manual_seed(seed)
    vae = tiny_vae_v1_2(config_2d=VAE_2D, config_temporal=VAE_TEMPORAL).eval()
    net = STDiT3(in_channels=vae.out_channels, **MODEL).eval()
    for p in net.parameters():  # zero-initialised layers would hide the conditioning: every weight random
        torch.nn.init.normal_(p, std=0.05)
    te = HashText(dim=MODEL["caption_channels"], L=MODEL["model_max_length"])
    te.set_null(net)
    return net, vae, te


@torch.no_grad()
def reference_run(net, vae, te, c=CASE):
    "scripts/inference.py's loop over batches and loops (v1.2.0), its own functions, on CPU in float32."
    from opensora.models.text_encoder.t5 import text_preprocessing
    from opensora.schedulers.rf import RFLOW
    from opensora.utils.inference_utils import (append_generated, append_score_to_prompts, apply_mask_strategy, dframe_to_frame,
                                                extract_prompts_loop, merge_prompt, prepare_multi_resolution_info, split_prompt)
    device, dtype = "cpu", torch.float32
    torch.manual_seed(c["seed"])  # set_random_seed(seed=cfg.seed)
    scheduler = RFLOW(num_sampling_steps=c["num_sampling_steps"], cfg_scale=c["cfg_scale"],
                      use_timestep_transform=c["use_timestep_transform"])
    image_size, num_frames = tuple(c["image_size"]), c["num_frames"]
    latent_size = vae.get_latent_size((num_frames, *image_size))
    prompts, cfl = c["prompts"], c["condition_frame_length"]
    reference_path, mask_strategy = [""] * len(prompts), [""] * len(prompts)
    out = dict(full_prompts=[], mask_strategies=[], latents=[], videos=[], cond=[], masks=[])
    for i in range(0, len(prompts), c["batch_size"]):
        batch_prompts = prompts[i:i + c["batch_size"]]
        ms, refs = mask_strategy[i:i + c["batch_size"]], [[] for _ in reference_path[i:i + c["batch_size"]]]
        model_args = prepare_multi_resolution_info(c["multi_resolution"], len(batch_prompts), image_size, num_frames, c["fps"], device, dtype)
        segs = [split_prompt(p) for p in batch_prompts]
        batch_prompts = [merge_prompt([text_preprocessing(s) for s in append_score_to_prompts(sl, aes=c["aes"])], li) for sl, li in segs]
        out["full_prompts"] += batch_prompts
        video_clips, lat, strat, cond, masks_b = [], [], [], [], []
        for loop_i in range(c["loops"]):
            batch_prompts_loop = extract_prompts_loop(batch_prompts, loop_i)
            if loop_i > 0:
                refs, ms = append_generated(vae, video_clips[-1], refs, ms, loop_i, cfl, c["condition_frame_edit"])
                cond.append(torch.stack([r[-1] for r in refs]))
            z = torch.randn(len(batch_prompts), vae.out_channels, *latent_size, device=device, dtype=dtype)
            masks = apply_mask_strategy(z, refs, ms, loop_i, align=c["align"])
            samples = scheduler.sample(net, te, z=z, prompts=batch_prompts_loop, device=device, additional_args=model_args,
                                       progress=False, mask=masks)
            lat.append(samples); strat.append(list(ms)); masks_b.append(masks)
            video_clips.append(vae.decode(samples.to(dtype), num_frames=num_frames))
        for idx in range(len(batch_prompts)):  # the join of scripts/inference.py
            video = [video_clips[k][idx] for k in range(c["loops"])]
            for k in range(1, c["loops"]): video[k] = video[k][:, dframe_to_frame(cfl):]
            out["videos"].append(torch.cat(video, dim=1))
        out["latents"].append(lat); out["mask_strategies"].append(strat); out["cond"].append(cond); out["masks"].append(masks_b)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=None, help="git mirror of hpcaitech/Open-Sora (default $OPENSORA_REF_REPO or the session's)")
    ap.add_argument("--out-dir", default=str(ROOT / "tests" / "golden"))
    a = ap.parse_args(argv)
    R.load(["opensora/models/text_encoder/t5.py", "opensora/utils/inference_utils.py", "opensora/schedulers/rf/__init__.py",
            "opensora/schedulers/rf/rectified_flow.py", "opensora/schedulers/iddpm/gaussian_diffusion.py",
            "opensora/schedulers/iddpm/diffusion_utils.py"], a.repo)
    net, vae, te = build()
    o = reference_run(net, vae, te)
    t = {f"model.{k}": v for k, v in net.state_dict().items()}
    t.update({f"vae.{k}": v for k, v in vae.state_dict().items()})
    for b, lat in enumerate(o["latents"]):
        for k, l in enumerate(lat): t[f"out.batch{b}.loop{k}.latents"] = l
        for k, m in enumerate(o["masks"][b]): t[f"out.batch{b}.loop{k}.mask"] = m
        for k, cz in enumerate(o["cond"][b]): t[f"out.batch{b}.loop{k + 1}.cond"] = cz
    for j, v in enumerate(o["videos"]): t[f"out.video{j}"] = v
    meta = dict(what="A 2-loop generation of a tiny random pipeline, 3 prompts in batches of 2, made by the reference's own loop "
                     "code; `out.batch{b}.loop{k}.latents` the sampler's result, `.mask` the frame mask apply_mask_strategy gave, "
                     "`.cond` the re-encoded condition latents appended as loop k's reference, `out.video{j}` prompt j's joined "
                     "video in [-1, 1] before clamping",
                reference=dict(repo="hpcaitech/Open-Sora", tag=R.TAG, commit=R.commit(a.repo),
                               files=["scripts/inference.py (its loop, transcribed in reference_run)", "opensora/utils/inference_utils.py",
                                      "opensora/schedulers/rf/__init__.py", "opensora/schedulers/rf/rectified_flow.py",
                                      "opensora/models/text_encoder/t5.py"]),
                script="tools/golden_loops.py", torch=torch.__version__, case=CASE, model=MODEL,
                vae=dict(builder="opensora_nb.vae.tiny_vae_v1_2", config_2d=VAE_2D, config_temporal=VAE_TEMPORAL, weights="vae.* in the safetensors"), text_encoder="tests/toy_text.py HashText",
                full_prompts=o["full_prompts"], mask_strategies=o["mask_strategies"])
    d = Path(a.out_dir); d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(d / "loops_tiny.safetensors"))
    (d / "loops_tiny.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(d / "loops_tiny.json", o["full_prompts"], o["mask_strategies"], (d / "loops_tiny.safetensors").stat().st_size // 1024, "KiB")


if __name__ == "__main__":
    main()
