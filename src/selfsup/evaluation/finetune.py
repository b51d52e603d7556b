"""Fine-tuning protocols: full or partial, with layer-wise learning-rate decay, and Core-tuning.

The pretrained backbone is copied (the encoder given is never changed), a linear classifier is
put on its features, and both are trained with SGD (Nesterov momentum 0.9, cosine schedule) on
random resized crops and flips of the labelled train images; the test accuracy is measured on the
un-augmented test images, in eval mode.

- ``mode="full"`` trains every block; ``mode="partial"`` trains only the last ``blocks`` blocks
  (the rest stays frozen, BatchNorm statistics included), the classic "fine-tune the top" setting.
- Layer-wise learning-rate decay (as in BEiT and MAE fine-tuning): block l of L gets
  ``lr * layer_decay ** (L - l)`` and the classifier ``lr``; ``layer_decay=1`` is plain
  fine-tuning. Blocks are found from parameter names (``block_groups``).
- ``core=True``: Core-tuning, Zhang, Hooi, Hu, Liang, Feng, "Unleashing the Power of Contrastive
  Self-Supervised Visual Models via Contrast-Regularized Fine-Tuning", NeurIPS 2021
  (arXiv:2102.06605). The cross-entropy gets a contrastive regularizer and both see extra
  samples mined in feature space (``core_tuning_loss``).
"""
from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def block_groups(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in blocks, input side first.

    A parameter belongs to the block named by its path up to the first numbered component
    (``features.3.0.weight`` -> ``features.3``, ``layer2.1.conv1.weight`` -> ``layer2.1``,
    ``blocks.5.attn.qkv.weight`` -> ``blocks.5``); un-numbered parameters before the first numbered
    block (a ResNet's conv1/bn1, a ViT's patch embedding and tokens) form one stem block, and those
    after it (a final norm) join the last block.
    """
    order: list[str] = []
    members: dict[str, list[nn.Parameter]] = {}
    for name, param in backbone.named_parameters():
        parts = name.split(".")
        numbered = next((i for i, p in enumerate(parts) if re.fullmatch(r"\d+", p)), None)
        key = ".".join(parts[:numbered + 1]) if numbered is not None else None
        if key is None:
            key = "<stem>" if not any(k != "<stem>" for k in order) else order[-1]
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(param)
    return [members[k] for k in order]


def core_tuning_loss(features: torch.Tensor, labels: torch.Tensor, classifier: nn.Module, contrastor: nn.Module,
                     num_classes: int, eta: float = 0.1, alpha: float = 1.0, temperature: float = 0.07,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Core-tuning's objective on one batch of backbone features (B, D) with labels (B,) in 0..K-1.

    Three sets of feature vectors, each with a soft label (one-hot for real samples):
    1. the B real features;
    2. hard negatives: each feature mixed with a random other one, f' = (1 - l) f_i + l f_j with
       l = max(Beta(alpha, alpha), 0.8), so f' sits next to f_j but carries some of i's class;
    3. hard pairs: for each anchor, its hardest positive (the same-class sample least similar to it)
       mixed with its hardest negative (the other-class sample most similar), l ~ Beta(alpha, alpha),
       samples near the decision boundary.
    The classifier is trained with soft-label cross-entropy on all 3B (the mixup-smoothed decision
    boundary); the contrastor (Linear-ReLU-Linear, L2-normalized output) feeds a focal supervised
    contrastive loss over all 3B, in which samples with the same soft label are positives and each
    positive term log p is weighted by (1 - p) (the focal weight). Total: CE + eta * contrastive.
    These follow the paper's method and the authors' published code for CIFAR-10 (their eta 0.1 and
    alpha 1 are the defaults); the hardest positive here is the least similar same-class sample, or
    the anchor itself when its class has no other sample in the batch.
    """
    b = len(features)
    onehot = F.one_hot(labels, num_classes).float()  # (B, K)
    device = features.device
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    with torch.no_grad():
        shuffle = torch.randperm(b, generator=generator).to(device)
        # torch.distributions draws from the global RNG, which finetune() seeds
        lam_neg = beta.sample((b,)).clamp_min(0.8).to(device).view(b, 1)
        lam_pair = beta.sample((b,)).to(device).view(b, 1)
        sim = F.normalize(features.detach().float(), dim=1) @ F.normalize(features.detach().float(), dim=1).T  # (B, B)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(b, dtype=torch.bool, device=device)
        positive = sim.masked_fill(~same | eye, math.inf)
        hard_pos = torch.where(torch.isinf(positive.min(1).values), torch.arange(b, device=device), positive.argmin(1))
        negative = sim.masked_fill(same, -math.inf)
        has_negative = ~torch.isinf(negative.max(1).values)
        hard_neg = torch.where(has_negative, negative.argmax(1), shuffle)
    f_neg = (1 - lam_neg) * features + lam_neg * features[shuffle]
    y_neg = (1 - lam_neg) * onehot + lam_neg * onehot[shuffle]
    f_pair = lam_pair * features[hard_pos] + (1 - lam_pair) * features[hard_neg]
    y_pair = lam_pair * onehot[hard_pos] + (1 - lam_pair) * onehot[hard_neg]
    all_f = torch.cat([features, f_neg, f_pair])  # (3B, D)
    all_y = torch.cat([onehot, y_neg, y_pair])  # (3B, K)
    ce = -(F.log_softmax(classifier(all_f).float(), dim=1) * all_y).sum(1).mean()
    z = F.normalize(contrastor(all_f).float(), dim=1)  # (3B, P)
    contrast = focal_supcon(z, all_y, temperature)
    return {"loss": ce + eta * contrast, "ce": ce.detach(), "contrast": contrast.detach()}


def focal_supcon(z: torch.Tensor, soft_labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss with focal weights; z (N, P) L2-normalized, soft_labels (N, K).

    Rows with identical soft labels are positives of each other. For anchor i and positive p,
    with log p_ip = s_ip / t - log sum_{a != i} exp(s_ia / t): the term -(1 - p_ip) log p_ip; the
    anchor's loss is the sum over its positives divided by N (the batch mean of the authors' code),
    averaged over the anchors that have a positive.
    """
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, -math.inf)  # (N, N)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    same = (soft_labels[:, None, :] - soft_labels[None, :, :]).abs().amax(-1) < 1e-6  # (N, N) identical labels
    same &= ~eye
    log_prob = log_prob.masked_fill(eye, 0.0)  # -inf on the diagonal would give 0 * inf = NaN gradients
    weight = 1 - log_prob.exp()
    per_anchor = -(weight * log_prob).masked_fill(~same, 0.0).sum(1) / n  # (N,)
    has_positive = same.any(1)
    if not has_positive.any():
        return z.sum() * 0.0
    return per_anchor[has_positive].sum() / has_positive.sum()


def finetune(encoder: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
             test_labels: torch.Tensor, views, epochs: int = 5, lr: float = 0.01, batch_size: int = 128,
             weight_decay: float = 1e-4, layer_decay: float = 1.0, mode: str = "full", blocks: int = 2,
             core: bool = False, eta: float = 0.1, alpha: float = 1.0, seed: int = 0, amp: bool = False) -> dict:
    """Fine-tune a copy of ``encoder.backbone`` with a linear classifier (see the module docstring).

    train_images / test_images: uint8 (N, C, H, W); labels any integers. `views(images, generator)`
    draws the training augmentation (its first view is used). Returns {"accuracy", "train_loss",
    "trainable_blocks", "epochs"}.
    """
    if mode not in ("full", "partial"):
        raise ConfigError(f"fine-tuning mode {mode!r} is not full or partial.", "use mode=full or mode=partial.")
    if not 0 < layer_decay <= 1:
        raise ConfigError(f"layer_decay={layer_decay} is outside (0, 1].", "use e.g. 0.75 (or 1 for none).")
    device = next(encoder.parameters()).device
    classes, y = torch.unique(train_labels.cpu(), return_inverse=True)
    k = len(classes)
    torch.manual_seed(seed)
    backbone = copy.deepcopy(encoder.backbone).to(device)
    groups = block_groups(backbone)
    n_train = len(groups) if mode == "full" else max(1, min(blocks, len(groups)))
    frozen = [p for g in groups[:len(groups) - n_train] for p in g]
    for p in frozen:
        p.requires_grad_(False)
    classifier = nn.Linear(backbone.dim, k).to(device)
    contrastor = nn.Sequential(nn.Linear(backbone.dim, backbone.dim), nn.ReLU(), nn.Linear(backbone.dim, 256)).to(device)
    param_groups = [{"params": g, "lr_scale": layer_decay ** (len(groups) - 1 - i)}
                    for i, g in enumerate(groups) if i >= len(groups) - n_train]
    heads = list(classifier.parameters()) + (list(contrastor.parameters()) if core else [])
    param_groups.append({"params": heads, "lr_scale": 1.0})
    optimizer = torch.optim.SGD(param_groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    frozen_modules = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      and all(not p.requires_grad for p in m.parameters(recurse=False))]
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(train_images) // batch_size)
    total, step, losses = epochs * steps_per_epoch, 0, []
    normalize = encoder.normalize
    for _ in range(epochs):
        order = torch.randperm(len(train_images), generator=generator)
        losses = []
        backbone.train()
        for m in frozen_modules:  # a frozen block keeps its pretrained statistics
            m.eval()
        for b in range(max(1, len(train_images) // batch_size)):
            index = order[b * batch_size:(b + 1) * batch_size]
            with torch.no_grad():
                drawn, _ = views(train_images[index].to(device), generator)
            target = y[index].to(device)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total)) * group["lr_scale"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                features = backbone(drawn[0].contiguous(memory_format=torch.channels_last)).float()
            if core:
                loss = core_tuning_loss(features, target, classifier, contrastor, k, eta, alpha, generator=generator)["loss"]
            else:
                loss = F.cross_entropy(classifier(features), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
    backbone.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_images), 512):
            x = normalize(test_images[start:start + 512].to(device)).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = classifier(backbone(x).float())
            correct += (classes[logits.argmax(1).cpu()] == test_labels[start:start + 512].cpu()).sum().item()
    return {"accuracy": correct / max(1, len(test_images)), "train_loss": sum(losses) / max(1, len(losses)),
            "trainable_blocks": float(n_train), "epochs": float(epochs)}
