"""Pseudo-labels from a first-stage model: G-SimCLR's stage one, outside the method file.

Chakraborty, Gosthipaty, Paul. G-SimCLR: Self-Supervised Contrastive Learning with Guided Projection
via Pseudo Labelling. ICDM Workshops (DLKT) 2020, arXiv:2009.12007. Every training image is
embedded by a first stage and the embeddings are clustered with k-means; the cluster ids are the
pseudo-labels. First stages: "dae" (the paper's denoising autoencoder, trained here), "pixels"
(PCA of the normalized pixels) or the path of an exported selfsup encoder (read here, so that the
method itself never touches a file). See ``selfsup.methods.gsimclr`` for the recipe and costs.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .methods.base import TrainData

FIRST_STAGES = ("dae", "pixels")
MAX_SIZE = 32  # the first stage sees images shrunk to at most 32 x 32 (area averaging): its cost does not grow with H, W
PCA_DIMS = 50  # "pixels": principal components kept
KMEANS_N_INIT = 3  # k-means restarts (sklearn keeps the one with the lowest inertia)
DAE_BATCH, DAE_LR, DAE_WIDTHS, DAE_LATENT = 128, 1e-3, (16, 32, 64), 32
CHUNK = 4096  # images per chunk when normalizing / extracting features


def pseudo_labels(data: TrainData, first_stage: str, k: int, steps: int, noise_std: float, seed: int) -> torch.Tensor:
    """(N,) int64 k-means cluster ids of the first stage's features of every training image."""
    return kmeans(first_stage_features(data, first_stage, steps, noise_std, seed), k, seed)


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int = 1):
    """On a CPU, run the block on `threads` torch threads and restore the setting afterwards."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _normalized(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, h, w): scaled to [0, 1], normalized, shrunk to at most MAX_SIZE."""
    x = (images.float() / 255 - mean) / std
    h, w = x.shape[-2:]
    if h > MAX_SIZE or w > MAX_SIZE:
        x = F.interpolate(x, size=(min(h, MAX_SIZE), min(w, MAX_SIZE)), mode="area")
    return x


def _stats(data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
    device = data.samples.device
    mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return mean, std


def first_stage_features(data: TrainData, first_stage: str, steps: int, noise_std: float, seed: int) -> torch.Tensor:
    """(N, F) float32 CPU features of every training image from the named first stage."""
    if first_stage in FIRST_STAGES:
        with _cpu_threads(data.samples.device):  # small kernels (and eigh: 0.1 s vs 7 s measured) on one thread
            if first_stage == "pixels":
                return pixel_pca(data, PCA_DIMS)
            return dae_features(train_dae(data, steps, noise_std, seed), data)
    from .encoder import load_encoder
    from .evaluation.features import extract_features

    encoder = load_encoder(first_stage, device=data.samples.device)
    if encoder.mean.shape[1] != data.samples.shape[1]:
        raise ConfigError(f"gsimclr first_stage encoder '{first_stage}' takes {encoder.mean.shape[1]}-channel images, "
                          f"the training set has {data.samples.shape[1]} channels.",
                          "use an encoder trained on images like these, or first_stage=dae.")
    return F.normalize(extract_features(encoder, data.samples, device=data.samples.device), dim=1)


def pixel_pca(data: TrainData, dims: int) -> torch.Tensor:
    """Projections of the normalized pixels on their top `dims` principal components, (N, dims) float32 CPU."""
    mean, std = _stats(data)
    n = len(data.samples)
    total, gram = None, None
    for start in range(0, n, CHUNK):  # float32 products per chunk, summed in float64
        x = _normalized(data.samples[start:start + CHUNK], mean, std).flatten(1)  # (b, P)
        total = x.double().sum(0) if total is None else total + x.double().sum(0)
        gram = (x.T @ x).double() if gram is None else gram + (x.T @ x).double()
    center = total / n  # (P,)
    cov = gram / n - center[:, None] * center[None, :]  # (P, P)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    top = vectors[:, -min(dims, cov.shape[0]):].flip(1).float()  # (P, dims)
    out = [((_normalized(data.samples[s:s + CHUNK], mean, std).flatten(1) - center.float()) @ top).cpu()
           for s in range(0, n, CHUNK)]
    return torch.cat(out)


def _block(c_in: int, c_out: int, transposed: bool = False) -> nn.ModuleList:
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(c_in, c_out, 3, stride=2, padding=1, bias=False)
    return nn.ModuleList([conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)])


class DenoisingAutoencoder(nn.Module):
    """Three stride-2 conv blocks -> linear bottleneck (the features) -> mirrored transposed convs."""

    def __init__(self, channels: int, height: int, width: int, widths=DAE_WIDTHS, latent: int = DAE_LATENT):
        super().__init__()
        self.sizes = [(height, width)]
        for _ in widths:  # a 3x3 stride-2 conv with padding 1 maps n to ceil(n / 2)
            h, w = self.sizes[-1]
            self.sizes.append(((h + 1) // 2, (w + 1) // 2))
        self.widths = widths
        ins = (channels, *widths[:-1])
        self.down = nn.ModuleList(_block(i, o) for i, o in zip(ins, widths))
        h, w = self.sizes[-1]
        self.to_latent = nn.Linear(widths[-1] * h * w, latent)
        self.from_latent = nn.Linear(latent, widths[-1] * h * w)
        self.up = nn.ModuleList(_block(o, i, transposed=True) for i, o in zip(ins[1:][::-1], widths[1:][::-1]))
        self.out = nn.ConvTranspose2d(widths[0], channels, 3, stride=2, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm, act in self.down:
            x = act(norm(conv(x)))
        return self.to_latent(x.flatten(1))  # (B, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.sizes[-1]
        y = F.relu(self.from_latent(self.encode(x))).view(len(x), self.widths[-1], h, w)
        for (conv, norm, act), size in zip(self.up, self.sizes[-2:0:-1]):
            y = act(norm(conv(y, output_size=size)))
        return self.out(y, output_size=self.sizes[0])  # (B, C, H, W), normalized pixel units


def train_dae(data: TrainData, steps: int, noise_std: float, seed: int) -> DenoisingAutoencoder:
    """Train the denoising autoencoder on the normalized images; everything random comes from `seed`."""
    device = data.samples.device
    mean, std = _stats(data)
    _, c, h, w = _normalized(data.samples[:1], mean, std).shape
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the global RNG left as it was
        torch.manual_seed(seed)
        dae = DenoisingAutoencoder(c, h, w)
    dae.to(device).train()
    order = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    optimizer = torch.optim.Adam(dae.parameters(), lr=DAE_LR)
    batch = min(DAE_BATCH, len(data.samples))
    with torch.enable_grad():
        for _ in range(steps):
            index = torch.randint(len(data.samples), (batch,), generator=order).to(device)
            clean = _normalized(data.samples[index], mean, std)  # (b, C, h, w)
            noisy = clean + noise_std * torch.randn(clean.shape, generator=noise, device=device)
            loss = F.mse_loss(dae(noisy), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return dae.eval()


@torch.no_grad()
def dae_features(dae: DenoisingAutoencoder, data: TrainData) -> torch.Tensor:
    """The bottleneck of every clean image, (N, latent) float32 CPU."""
    mean, std = _stats(data)
    return torch.cat([dae.encode(_normalized(data.samples[s:s + CHUNK], mean, std)).float().cpu()
                      for s in range(0, len(data.samples), CHUNK)])


def kmeans(features: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """scikit-learn k-means (k-means++ init, ``n_init=3``, ``random_state=seed``): cluster ids (N,) int64."""
    from sklearn.cluster import KMeans

    x = features.double().numpy()
    labels = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit_predict(x)
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))
