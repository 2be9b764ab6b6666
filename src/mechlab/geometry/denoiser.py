"""A small denoiser (score network) on points of S2, plain or SO(2)-equivariant, trained by the one trainer.

Denoising score matching with the EDM parameterisation (Karras et al. 2022, arXiv 2206.00364): for a clean point x0
and noise level σ, the noisy input is x = x0 + σ·ε and the denoiser

    D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ)),
    c_skip = σd² / (σ² + σd²),  c_out = σ·σd / sqrt(σ² + σd²),  c_in = 1 / sqrt(σ² + σd²),  c_noise = log(σ) / 4,

is trained on the loss λ(σ)·|D(x, σ) − x0|², λ = (σ² + σd²) / (σ·σd)², σ log-uniform in [σ_min, σ_max]; σd² = 1/3
is the per-coordinate variance of the uniform measure on S2. Its minimiser over all functions, for a finite
training set, is the empirical optimal denoiser, whose probability-flow ODE returns the training points: a network
that reaches it memorises (arXiv 2605.21692's memorising predictor).

* plain: F is an MLP of (c_in·x, c_noise) in R^4 → R^3;
* SO(2)-equivariant (rotations about the third axis): with u = c_in·(x1, x2), ρ = |u|, an MLP of the invariants
  (ρ, c_in·x3, c_noise) gives (a, b, c) and F = (a·u + b·J·u, c), J the quarter turn; every smooth
  equivariant field of this form commutes with the rotations, so D(R·x, σ) = R·D(x, σ) exactly (tested). Its
  empirical optimum generates the training points' orbits (latitude circles).

:func:`denoiser_task` wraps the training set as a :class:`mechlab.train.trainer.Task` (the batch of step s drawn from
``numpy.random.default_rng([seed, s])``); :func:`sample` integrates the probability-flow ODE dx/dσ = (x − D(x, σ))/σ
with Heun's method on the EDM schedule (ρ = 7) from σ_max down to σ_min, then applies D once more.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from mechlab.errors import ConfigError

SIGMA_DATA = math.sqrt(1 / 3)  # per-coordinate standard deviation of the uniform measure on S2
SIGMA_MIN, SIGMA_MAX = 0.002, 3.0


class PointDenoiser(nn.Module):
    """D(x, σ) for points of R^3: ``forward(inp, target)`` with inp (B, 4) = (noisy point, log σ) and target (B, 3)
    the clean points returns (D (B, 3), the EDM-weighted mean squared error). ``equivariant`` selects the
    SO(2)-equivariant architecture (see the module docstring); ``width`` and ``depth`` size the MLP. Raises
    ConfigError unless width and depth are integers >= 1 (bool excluded)."""

    def __init__(self, equivariant: bool = False, width: int = 128, depth: int = 3):
        super().__init__()
        for name, v in (("width", width), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ConfigError(f"PointDenoiser: {name} must be an integer, got {v!r} ({type(v).__name__})")
        width, depth = int(width), int(depth)
        if width < 1 or depth < 1:
            raise ConfigError(f"PointDenoiser needs width >= 1 and depth >= 1, got {width}, {depth}")
        self.equivariant = equivariant
        layers, fan_in = [], 3 if equivariant else 4
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.SiLU()]
            fan_in = width
        self.net = nn.Sequential(*layers, nn.Linear(fan_in, 3))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x, σ): x (B, 3), σ (B,) → (B, 3)."""
        s = sigma[:, None]
        s2 = s * s + SIGMA_DATA**2
        c_skip, c_out, c_in = SIGMA_DATA**2 / s2, s * SIGMA_DATA / s2.sqrt(), 1 / s2.sqrt()
        c_noise = s.log() / 4
        if self.equivariant:
            u = x[:, :2] * c_in
            rho = u.norm(dim=1, keepdim=True)
            a, b, c = self.net(torch.cat([rho, x[:, 2:] * c_in, c_noise], dim=1)).unbind(1)
            ju = torch.stack([-u[:, 1], u[:, 0]], dim=1)
            f = torch.cat([a[:, None] * u + b[:, None] * ju, c[:, None]], dim=1)
        else:
            f = self.net(torch.cat([x * c_in, c_noise], dim=1))
        return c_skip * x + c_out * f

    def forward(self, inp: torch.Tensor, target: torch.Tensor | None = None):
        x, sigma = inp[:, :3], inp[:, 3].exp()
        out = self.denoise(x, sigma)
        if target is None:
            return out, None
        weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
        return out, (weight * ((out - target) ** 2).sum(1)).mean()


def _check_sigmas(sigma_min, sigma_max) -> tuple[float, float]:
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if not sigma_min < sigma_max:
        raise ValueError(f"need sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return float(sigma_min), float(sigma_max)


def _check_points(points, what: str) -> np.ndarray:
    try:
        points = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a numeric array of shape (n, 3)") from None
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"{what} must have shape (n, 3) with n >= 1, got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{what} hold NaN or infinite coordinates")
    return points


def noisy_batch(points: np.ndarray, rng: np.random.Generator, batch: int, sigma_min: float = SIGMA_MIN,
                sigma_max: float = SIGMA_MAX) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (batch, 4), targets (batch, 3)): training points drawn with replacement, σ log-uniform in
    [sigma_min, sigma_max], inputs = (x0 + σ·ε, log σ). Raises ValueError for points not a non-empty finite
    (n, 3) array, batch not an integer >= 1, or sigmas not finite with 0 < sigma_min < sigma_max."""
    points = _check_points(points, "noisy_batch: points")
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ValueError(f"noisy_batch: batch must be an integer >= 1, got {batch!r}")
    sigma_min, sigma_max = _check_sigmas(sigma_min, sigma_max)
    x0 = points[rng.integers(0, len(points), batch)]
    log_sigma = rng.uniform(math.log(sigma_min), math.log(sigma_max), batch)
    noisy = x0 + np.exp(log_sigma)[:, None] * rng.standard_normal(x0.shape)
    inp = np.concatenate([noisy, log_sigma[:, None]], axis=1)
    return torch.from_numpy(inp).float(), torch.from_numpy(x0).float()


def denoiser_task(points: np.ndarray, equivariant: bool = False, width: int = 128, depth: int = 3,
                  eval_points: np.ndarray | None = None):
    """A :class:`mechlab.train.trainer.Task` that trains a :class:`PointDenoiser` on ``points`` (n, 3). With
    ``eval_points`` (held-out points of the same distribution) it logs the weighted loss on 2,048 fixed noisy
    copies of the training points (``train_loss_fixed``) and of the held-out points (``heldout_loss_fixed``):
    a memorising denoiser has the first far below the second. Raises ValueError for points or eval_points not a
    non-empty (n, 3) array of finite values; ConfigError (at once) for a bad width or depth."""
    from mechlab.train.trainer import Task

    points = _check_points(points, "denoiser_task: training points")
    if eval_points is not None:
        eval_points = _check_points(eval_points, "denoiser_task: eval_points")
    PointDenoiser(equivariant, width, depth)  # ConfigError now, not at the first step

    def batch(seed: int, step: int, size: int):
        return noisy_batch(points, np.random.default_rng([seed, step]), size)

    evaluate = None
    if eval_points is not None:
        fixed = {"train_loss_fixed": noisy_batch(points, np.random.default_rng(12345), 2048),
                 "heldout_loss_fixed": noisy_batch(eval_points, np.random.default_rng(12345), 2048)}

        @torch.no_grad()
        def evaluate(model):
            return {k: float(model(x, y)[1]) for k, (x, y) in fixed.items()}

    return Task(build_model=lambda: PointDenoiser(equivariant, width, depth), batch=batch, evaluate=evaluate)


def edm_sigmas(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0) -> np.ndarray:
    """The EDM noise schedule: ``steps`` levels from sigma_max down to sigma_min, (σ_max^(1/ρ) + t·(σ_min^(1/ρ) −
    σ_max^(1/ρ)))^ρ for t evenly in [0, 1] (Karras et al. 2022, eq. 5). Raises ConfigError for steps not an integer
    >= 2, ValueError for sigmas not finite with 0 < sigma_min < sigma_max or rho not finite > 0."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise ConfigError(f"the sampler needs an integer number >= 2 of noise levels, got {steps!r}")
    sigma_min, sigma_max = _check_sigmas(sigma_min, sigma_max)
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"rho must be a finite number > 0, got {rho!r}")
    t = np.linspace(0, 1, steps)
    return (sigma_max ** (1 / rho) + t * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


@torch.no_grad()
def sample(model: PointDenoiser, m: int, seed: int = 0, steps: int = 40, sigma_min: float = SIGMA_MIN,
           sigma_max: float = SIGMA_MAX) -> np.ndarray:
    """m samples (m, 3), float64: x ~ N(0, σ_max²·I), Heun's method on dx/dσ = (x − D(x, σ))/σ over
    :func:`edm_sigmas`, then D(x, σ_min) (the denoiser's estimate of the clean point). Raises ValueError for m not
    an integer >= 1 or sigmas not finite with 0 < sigma_min < sigma_max; ConfigError for steps not an integer >= 2."""
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
        raise ValueError(f"sample: m (the number of samples) must be an integer >= 1, got {m!r}")
    m = int(m)
    sig = edm_sigmas(steps, sigma_min, sigma_max)
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 3, generator=g) * sig[0]

    def drift(x, s):
        return (x - model.denoise(x, torch.full((len(x),), s))) / s

    for s, s_next in zip(sig[:-1], sig[1:]):
        d = drift(x, float(s))
        x_euler = x + (s_next - s) * d
        x = x + (s_next - s) * 0.5 * (d + drift(x_euler, float(s_next)))
    return model.denoise(x, torch.full((m,), float(sig[-1]))).double().numpy()
