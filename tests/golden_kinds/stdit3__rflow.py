"""Golden checks for `stdit3_*` cases: rectified-flow sampling (`sample.out`) and the masked training loss
(`loss.out`) of Open-Sora 1.2 run on the golden STDiT3 (tolerance 1e-4)."""
import torch
from golden_compare import close

from opensora_nb.rflow import RFlow
from opensora_nb.stdit import stdit3_from_state_dict

TOL = 1e-4


def _model(case):
    return stdit3_from_state_dict(case.meta["config"], case.t, prefix="model.", strict_name=f"golden {case.stem}").eval()


# the project's deliberate divergences these outputs can show (golden_compare.DIVERGENCES): a sample whose x_mask
# leaves no frame in the loss (reference NaN, project 0), a sample without caption tokens (reference NaN, project finite)
SAMPLE_DIVERGENCES = ("cross_attention_no_caption_token",)
LOSS_DIVERGENCES = ("rflow_loss_no_denoised_frame", "cross_attention_no_caption_token")


def check_rflow_sample(case):
    t, spec = case.t, case.meta["sample"]
    z = t["sample.z"]
    n = z.shape[0]
    rf = RFlow(num_sampling_steps=spec["num_sampling_steps"], cfg_scale=spec["cfg_scale"],
               use_timestep_transform=spec.get("use_timestep_transform", True))
    kwargs = dict(mask=t["in.mask"], fps=t["in.fps"], height=t["in.height"], width=t["in.width"],
                  num_frames=torch.full((n,), float(spec["num_frames"])))
    with torch.no_grad():
        out = rf.sample(_model(case), z, y=t["in.y"], y_null=t["sample.y_null"], model_kwargs=kwargs, progress=False)
    close(case, "sample.out", out, t["sample.out"], TOL, divergences=SAMPLE_DIVERGENCES)


def check_rflow_loss(case):
    t = case.t
    kwargs = dict(y=t["in.y"], mask=t["in.mask"], fps=t["in.fps"], height=t["in.height"], width=t["in.width"],
                  x_mask=t["in.x_mask"])
    with torch.no_grad():
        out = RFlow().training_losses(_model(case), t["in.x"], kwargs, noise=t["loss.noise"], mask=t["in.x_mask"],
                                      t=t["loss.t"])
    close(case, "loss.out", out["loss"], t["loss.out"], TOL, divergences=LOSS_DIVERGENCES)
