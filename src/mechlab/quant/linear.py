"""Quantised drop-in replacements for nn.Linear. Each holds only its packed codes and the small side
information as buffers (so ``state_dict`` is the stored format) and decodes its weight in every forward."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.quant.config import RTNConfig, GPTQConfig, TrellisConfig
from mechlab.quant.qtip import TrellisCode, reconstruct
from mechlab.quant.scalar import dequantize, n_groups
from mechlab.quant.trellis import pack_codes, unpack_codes


def _pack_signs(s: torch.Tensor) -> torch.Tensor:
    return pack_codes((s > 0).long().unsqueeze(0), 1)[0]


def _unpack_signs(b: torch.Tensor, n: int) -> torch.Tensor:
    return unpack_codes(b.unsqueeze(0), 1, n)[0].float() * 2 - 1


class QuantizedLinear(nn.Module):
    """Common part: shapes, an optional float bias, forward through :meth:`weight`."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    def weight(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.config}"


class IntLinear(QuantizedLinear):
    """Integer grid per group: packed ``bits``-bit codes, fp16 scales and zero points (RTN or GPTQ)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, config: RTNConfig | GPTQConfig):
        super().__init__(in_features, out_features, bias)
        self.config = config
        ng = n_groups(in_features, config.group_size)
        self.register_buffer("qweight", torch.zeros(out_features, -(-in_features * config.bits // 8), dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, ng, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(out_features, ng, dtype=torch.float16))

    def set(self, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> "IntLinear":
        self.qweight.copy_(pack_codes(q, self.config.bits))
        self.scales.copy_(scales.half())
        self.zeros.copy_(zeros.half())
        return self

    def codes(self) -> torch.Tensor:
        return unpack_codes(self.qweight, self.config.bits, self.in_features)

    def weight(self) -> torch.Tensor:
        return dequantize(self.codes(), self.scales, self.zeros, self.config.group_size)


class TrellisLinear(QuantizedLinear):
    """Trellis-coded weights: packed codes (exactly k bits per weight), one float32 scale, RHT signs as bits, and
    the L−kV start bits of each tile only when not tail-biting."""

    def __init__(self, in_features: int, out_features: int, bias: bool, config: TrellisConfig):
        super().__init__(in_features, out_features, bias)
        self.config = config
        t, kv = config.tile, config.k * config.V
        n_tiles, n_steps = (out_features // t) * (in_features // t), config.seq_len // config.V
        self.register_buffer("packed", torch.zeros(n_tiles, n_steps * kv // 8, dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros((), dtype=torch.float32))
        self.register_buffer("s_out", torch.zeros(-(-out_features // 8), dtype=torch.uint8) if config.rht else None)
        self.register_buffer("s_in", torch.zeros(-(-in_features // 8), dtype=torch.uint8) if config.rht else None)
        self.register_buffer("start", None if config.tail_biting else torch.zeros(n_tiles, dtype=torch.int32))

    def set(self, code: TrellisCode) -> "TrellisLinear":
        kv = self.config.k * self.config.V
        self.packed.copy_(pack_codes(code.codes, kv))
        self.scale.fill_(code.scale)
        if self.config.rht:
            self.s_out.copy_(_pack_signs(code.s_out))
            self.s_in.copy_(_pack_signs(code.s_in))
        if not self.config.tail_biting:
            self.start.copy_(code.start.int())
        return self

    def code(self) -> TrellisCode:
        cfg = self.config
        n_steps = cfg.seq_len // cfg.V
        rht = cfg.rht
        return TrellisCode(
            codes=unpack_codes(self.packed, cfg.k * cfg.V, n_steps),
            start=None if self.start is None else self.start.long(),
            scale=float(self.scale),
            s_out=_unpack_signs(self.s_out, self.out_features) if rht else None,
            s_in=_unpack_signs(self.s_in, self.in_features) if rht else None,
            shape=(self.out_features, self.in_features),
        )

    def weight(self) -> torch.Tensor:
        return reconstruct(self.code(), self.config)


def quantized_linear(linear: nn.Linear, config) -> QuantizedLinear:
    """An empty quantised module of ``linear``'s shape for ``config`` (filled by ``set`` or ``load_state_dict``)."""
    cls = TrellisLinear if isinstance(config, TrellisConfig) else IntLinear
    return cls(linear.in_features, linear.out_features, linear.bias is not None, config)
