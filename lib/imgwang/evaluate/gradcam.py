"""Where the fine-tuned classifier looked: Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391) over the encoder's
last feature map.

The map for class c is ReLU(sum_k w_k A_k), where A_k are the channels of the encoder's feature map and w_k the
spatial mean of d(logit_c)/dA_k; it is upsampled bilinearly to the image and scaled to [0, 1] per image, as the
paper (and jacobgil/pytorch-grad-cam's GradCAM) does. The few lines here need no library: every encoder of the
lab exposes `forward_features` (a timm feature map) and the classifier's head reads that map directly. The map's
resolution is the encoder's last stage (a 64 px image through resnet18: 2 x 2), so on small images it can only
say which part of the image, not which pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plots import nothing_to_show, to_hwc_uint8
from .plots import short_class as short


def grad_cam(model, images: torch.Tensor, classes) -> torch.Tensor:
    """model: a Classifier (encoder.forward_features -> head); images float (B, 3, H, W) in [0, 1]; classes (B,).
    -> (B, H, W) float in [0, 1] on the CPU: where evidence for each image's class lies. The model's train/eval
    state is restored; its parameters get no gradients."""
    return grad_cam_on_grid(model, images, classes)[0]


def grad_cam_on_grid(model, images: torch.Tensor, classes) -> tuple[torch.Tensor, tuple[int, int]]:
    """grad_cam's maps and the (rows, columns) of the feature map they were computed on: a 1 x 1 map is one
    weight for the whole image, so its Grad-CAM cannot say where."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            maps = model.encoder.forward_features(images).detach().requires_grad_(True)
            logits = model.head(maps)
            score = logits.gather(1, torch.as_tensor(classes, device=logits.device).long().view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, maps)
        maps, grads = on_the_image(model.encoder, maps.detach(), grads, images.shape[-2:])
        cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * maps).sum(1, keepdim=True))
        grid = tuple(cam.shape[-2:])
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        return (cam / peak).cpu(), grid
    finally:
        model.train(was_training)


def on_the_image(encoder, maps: torch.Tensor, grads: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """A CNN's maps as they are; a transformer's tokens (B, C, N, 1) without its class and register tokens, laid
    out on its patch grid (B, C, rows, columns), as pytorch-grad-cam's reshape_transform does for a ViT: otherwise
    the tokens would be drawn as one stretched column."""
    grid, first = encoder.token_grid(*size), encoder.prefix_tokens
    if grid is None or maps.shape[-1] != 1 or maps.shape[2] - first != grid[0] * grid[1]:
        return maps, grads
    return tuple(t[:, :, first:, 0].unflatten(2, grid) for t in (maps, grads))


def cams_for(model, data, items: list[dict], device, batch_size: int = 64) -> list[dict]:
    """For each reviewed item ({"row", "true", "pred", ...}): the image as evaluation fed it (the eval loader's
    resize), the Grad-CAM of its predicted class and of its true class, and the feature map's (rows, columns)."""
    if not items:
        return []
    rows = [i["row"] for i in items]
    loader = data.loader(rows, [i["true"] for i in items], batch_size=batch_size, device=device, mode="eval")
    images = torch.cat([b.images for b in loader])
    model = model.to(device)
    pred, grid = grad_cam_on_grid(model, images, [i["pred"] for i in items])
    true = grad_cam(model, images, [i["true"] for i in items])
    return [{**item, "image": images[k].float().cpu(), "cam_pred": pred[k], "cam_true": true[k], "grid": grid}
            for k, item in enumerate(items)]


def plot_cams(cams: list[dict], class_names: list[str], title: str):
    """Columns: the reviewed images. Rows: the image; the map for the predicted class; for a mistake, the map
    for the true class too (what the model would have needed to look at)."""
    import matplotlib.pyplot as plt


    if not cams:
        return nothing_to_show()
    grid = cams[0].get("grid")
    if grid == (1, 1):
        return nothing_to_show(f"no Grad-CAM for the {title}: the encoder's last feature map is 1 x 1 at this SIZE, "
                               "one weight for the whole image;\na larger SIZE (or an encoder that downsamples less) "
                               "shows where the model looked")
    mistakes = any(c["pred"] != c["true"] for c in cams)
    rows = ["image", "pred"] + (["true"] if mistakes else [])
    fig, axes = plt.subplots(len(rows), len(cams), figsize=(1.3 * len(cams) + 0.6, 1.45 * len(rows)), squeeze=False,
                             layout="constrained")
    for j, c in enumerate(cams):
        picture = to_hwc_uint8(c["image"])
        for i, kind in enumerate(rows):
            ax = axes[i, j]
            ax.imshow(picture)
            if kind == "image":
                ax.set_title(f"true {short(class_names[c['true']])}\npred {short(class_names[c['pred']])} "
                             f"{c['prob_pred']:.2f}", fontsize=6)
            else:
                ax.imshow(c[f"cam_{kind}"].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel({"image": "image", "pred": "for predicted", "true": "for true"}[kind], fontsize=7)
    over = f" (over the encoder's {grid[0]} x {grid[1]} feature map)" if grid else ""
    fig.suptitle(f"Grad-CAM: {title}{over}", fontsize=9)
    return fig

