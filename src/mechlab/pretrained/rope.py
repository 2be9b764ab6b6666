"""RoPE frequency scaling of pretrained checkpoints, as the per-frequency divisors of ``ModelConfig.rope_freq_factors``.

Every scaling that only rescales the inverse frequencies base^(-2i/D) reduces to D/2 divisors, which is all the
Transformer needs (``rope_tables``):
- linear position interpolation (Chen et al. 2023, arXiv 2306.15595; GGUF ``rope.scaling.type = linear``,
  Hugging Face ``rope_type = "linear"``): every divisor = factor;
- Llama 3.1's frequency-dependent scaling (Hugging Face ``rope_type = "llama3"``): divisor 1 for wavelengths
  below original_context / high_freq_factor, ``factor`` above original_context / low_freq_factor, and a smooth
  interpolation of the inverse frequency in between; llama.cpp stores the same divisors as the ``rope_freqs``
  tensor of the GGUF file.
Scalings that also change the attention temperature or depend on the sequence length (YaRN, dynamic NTK,
LongRoPE) are refused by name: the model would compute something else.
"""

from __future__ import annotations

import math
from typing import Any

from mechlab.errors import ConfigError

SUPPORTED = ("linear", "llama3")


def base_inv_freq(head_dim: int, base: float) -> list[float]:
    """The D/2 unscaled RoPE inverse frequencies base^(-2i/D), float64."""
    return [base ** (-2 * i / head_dim) for i in range(head_dim // 2)]


def llama3_freq_factors(head_dim: int, base: float, factor: float, low_freq_factor: float, high_freq_factor: float,
                        original_context: int) -> tuple[float, ...]:
    """Divisors of Llama 3.1's RoPE scaling (the formula of Meta's reference code and of transformers'
    ``llama3`` rope type): wavelength λ = 2π/ω; λ < L/high → 1; λ > L/low → factor; otherwise the inverse
    frequency is (1 − s)·ω/factor + s·ω with s = (L/λ − low)/(high − low), i.e. divisor 1/((1 − s)/factor + s)."""
    if not (factor > 0 and high_freq_factor > low_freq_factor > 0 and original_context > 0):
        raise ConfigError("llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
                          "original_max_position_embeddings > 0")
    out = []
    for w in base_inv_freq(head_dim, base):
        wavelen = 2 * math.pi / w
        if wavelen < original_context / high_freq_factor:
            out.append(1.0)
        elif wavelen > original_context / low_freq_factor:
            out.append(float(factor))
        else:
            s = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1.0 / ((1 - s) / factor + s))
    return tuple(out)


def linear_freq_factors(head_dim: int, factor: Any, where: str) -> tuple[float, ...] | None:
    """Linear interpolation: D/2 divisors equal to ``factor`` (None when the factor is 1)."""
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: linear rope scaling needs a numeric factor, got {factor!r}") from None
    if not (math.isfinite(factor) and factor > 0):
        raise ConfigError(f"{where}: rope scaling factor must be finite and positive, got {factor}")
    return None if factor == 1 else (factor,) * (head_dim // 2)


def hf_freq_factors(cfg: dict, head_dim: int, base: float) -> tuple[float, ...] | None:
    """The divisors a Hugging Face ``config.json`` asks for (``rope_scaling``, or transformers 5's
    ``rope_parameters``), None for plain RoPE. Raises ConfigError naming any other rope type."""
    spec = cfg.get("rope_scaling") or {}
    params = cfg.get("rope_parameters") or {}
    if not spec and params.get("rope_type", "default") != "default":
        spec = params
    kind = spec.get("rope_type", spec.get("type", "default")) if spec else "default"
    where = "Hugging Face config"
    if kind == "default":
        return None
    if kind == "linear":
        return linear_freq_factors(head_dim, spec.get("factor"), where)
    if kind == "llama3":
        try:
            return llama3_freq_factors(head_dim, base, float(spec["factor"]), float(spec["low_freq_factor"]),
                                       float(spec["high_freq_factor"]), int(spec["original_max_position_embeddings"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: llama3 rope scaling is missing or has a bad {e}") from None
    raise ConfigError(f"{where}: rope scaling type {kind!r} is not supported (mechlab implements "
                      f"{', '.join(SUPPORTED)}); it would change what the model computes")
