"""Quantised drop-in replacements for nn.Linear. Each holds only its packed codes and the small side
information as buffers (so ``state_dict`` is the stored format) and decodes its weight in every forward.

Trellis layers with the 1MAD code (V=1, tail-biting, k ≤ 4) run on the custom ops of the compiled kernel
(``mechlab::qmatvec_1mad`` and ``mechlab::decode_1mad``, mechlab/kernels/qmatvec.c; PyTorch fallbacks when it does
not build): for up to ``FUSED_MAX_ROWS`` input rows (decoding: batch 1 and small batches) a fused decode +
matrix-vector product straight from the packed codes, never materialising the weight; for more rows (prefill,
evaluation) a compiled decode, then one matmul."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.kernels import decode_1mad, qmatvec_1mad
from mechlab.quant import rht as rht_ops
from mechlab.quant.codes import one_mad_unit
from mechlab.quant.qtip import TrellisCode, reconstruct_rotated
from mechlab.quant.scalar import block_dequantize, block_format, dequantize, n_groups
from mechlab.quant.trellis import pack_codes, unpack_codes

if TYPE_CHECKING:
    from mechlab.quant.methods import GPTQConfig, RTNConfig, TrellisConfig


def _pack_signs(s: torch.Tensor) -> torch.Tensor:
    return pack_codes((s > 0).long().unsqueeze(0), 1)[0]


def _unpack_signs(b: torch.Tensor, n: int) -> torch.Tensor:
    return unpack_codes(b.unsqueeze(0), 1, n)[0].float() * 2 - 1


class QuantizedLinear(nn.Module):
    """Common part: shapes, an optional float bias, forward through :meth:`weight`. ``CODE_BUFFERS`` names the
    buffers that hold the weight codes (:func:`mechlab.quant.run.size_report` counts them as codes, every other
    buffer but the bias as side info); a stored layer class of a new method declares its own."""

    CODE_BUFFERS: tuple[str, ...] = ()

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    def weight(self) -> torch.Tensor:
        raise NotImplementedError

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (n,) int64 of the decoded weight, (n, in) float32 (here: the whole weight decoded; layers
        whose format allows it decode only the rows asked for)."""
        return self.weight()[ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.config}"


class IntLinear(QuantizedLinear):
    """Integer grid per group: packed ``bits``-bit codes, fp16 scales and zero points (RTN or GPTQ).

    With a llama.cpp block ``format`` in the config (:data:`mechlab.quant.scalar.BLOCK_FORMATS`) the groups are
    blocks of 32 holding exactly what the GGUF block holds: the fp16 d as ``scales``, for Q4_1 the fp16 minimum as
    ``mins`` (w = q·d + m), for the symmetric Q4_0 / Q8_0 no per-group zero at all (the type's fixed zero point:
    w = (q − 8)·d, (q − 128)·d); the weight decodes as llama.cpp's dequantize_row_* does."""

    CODE_BUFFERS = ("qweight",)

    def __init__(self, in_features: int, out_features: int, bias: bool, config: RTNConfig | GPTQConfig):
        super().__init__(in_features, out_features, bias)
        self.config = config
        self.format = None if getattr(config, "format", None) is None else block_format(config.format)
        ng = n_groups(in_features, config.group_size)
        self.register_buffer("qweight", torch.zeros(out_features, -(-in_features * config.bits // 8), dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, ng, dtype=torch.float16))
        if self.format is None:
            self.register_buffer("zeros", torch.zeros(out_features, ng, dtype=torch.float16))
        elif self.format.zero is None:
            self.register_buffer("mins", torch.zeros(out_features, ng, dtype=torch.float16))

    def set(self, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None) -> IntLinear:
        """Store codes q (out, in), scales and zeros (out, n_groups); with a block format ``zeros`` are the minima
        (Q4_1) or None (Q4_0, Q8_0), and scales / minima must already be fp16 values (as llama.cpp stores them)."""
        self.qweight.copy_(pack_codes(q, self.config.bits))
        self.scales.copy_(scales.half())
        if self.format is None:
            self.zeros.copy_(zeros.half())
        elif self.format.zero is None:
            self.mins.copy_(zeros.half())
        return self

    def codes(self) -> torch.Tensor:
        return unpack_codes(self.qweight, self.config.bits, self.in_features)

    def _decode(self, codes: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        pick = (lambda t: t) if ids is None else (lambda t: t[ids])  # noqa: E731
        if self.format is not None:
            return block_dequantize(codes, pick(self.scales), None if self.format.zero is not None
                                    else pick(self.mins), self.format)
        return dequantize(codes, pick(self.scales), pick(self.zeros), self.config.group_size)

    def weight(self) -> torch.Tensor:
        return self._decode(self.codes(), None)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of the decoded weight, decoding only those rows' codes."""
        return self._decode(unpack_codes(self.qweight[ids], self.config.bits, self.in_features), ids)


class TrellisLinear(QuantizedLinear):
    """Trellis-coded weights: packed codes (exactly k bits per weight), one float32 scale, RHT signs as bits (or as
    fp16 real scales with ``real_signs``), and the L−kV start bits of each tile only when not tail-biting."""

    CODE_BUFFERS = ("packed",)

    def __init__(self, in_features: int, out_features: int, bias: bool, config: TrellisConfig):
        super().__init__(in_features, out_features, bias)
        self.config = config
        t, kv = config.tile, config.k * config.V
        n_tiles, n_steps = (out_features // t) * (in_features // t), config.seq_len // config.V
        self.register_buffer("packed", torch.zeros(n_tiles, n_steps * kv // 8, dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros((), dtype=torch.float32))
        if config.real_signs:
            self.register_buffer("s_out", torch.zeros(out_features, dtype=torch.float16))
            self.register_buffer("s_in", torch.zeros(in_features, dtype=torch.float16))
        else:
            self.register_buffer("s_out", torch.zeros(-(-out_features // 8), dtype=torch.uint8) if config.rht else None)
            self.register_buffer("s_in", torch.zeros(-(-in_features // 8), dtype=torch.uint8) if config.rht else None)
        self.register_buffer("start", None if config.tail_biting else torch.zeros(n_tiles, dtype=torch.int32))
        self._replan()

    def set(self, code: TrellisCode) -> TrellisLinear:
        self._replan()
        kv = self.config.k * self.config.V
        self.packed.copy_(pack_codes(code.codes, kv))
        self.scale.fill_(code.scale)
        if self.config.real_signs:
            self.set_signs(code.s_out, code.s_in)
        elif self.config.rht:
            self.s_out.copy_(_pack_signs(code.s_out))
            self.s_in.copy_(_pack_signs(code.s_in))
        if not self.config.tail_biting:
            self.start.copy_(code.start.int())
        return self

    def set_signs(self, s_out: torch.Tensor, s_in: torch.Tensor) -> None:
        """Store new real sign vectors (``real_signs`` layers: after fine-tuning)."""
        self._replan()
        self.s_out.copy_(s_out.detach().half())
        self.s_in.copy_(s_in.detach().half())

    def signs(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(s_out, s_in) as float32 vectors (±1, or real with ``real_signs``); (None, None) without RHT."""
        if not self.config.rht:
            return None, None
        if self.config.real_signs:
            return self.s_out.float(), self.s_in.float()
        return _unpack_signs(self.s_out, self.out_features), _unpack_signs(self.s_in, self.in_features)

    def code(self) -> TrellisCode:
        cfg = self.config
        n_steps = cfg.seq_len // cfg.V
        s_out, s_in = self.signs()
        return TrellisCode(
            codes=unpack_codes(self.packed, cfg.k * cfg.V, n_steps),
            start=None if self.start is None else self.start.long(),
            scale=float(self.scale),
            s_out=s_out,
            s_in=s_in,
            shape=(self.out_features, self.in_features),
        )

    def rotated_weight(self) -> torch.Tensor:
        """W̃: the decoded weights times the global scale, in the rotated basis (before the signs and Hadamards)."""
        fused = self._fused()
        if fused is None:
            return reconstruct_rotated(self.code(), self.config)
        alpha = fused[0]
        return decode_1mad(self.packed, self.out_features, self.in_features, self.config.L, self.config.k) * alpha

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (n,) int64 of the decoded weight. Without the RHT (whose output side mixes rows) only the
        16-row tile rows holding them are decoded: 16·in weights per distinct tile row."""
        cfg, t = self.config, self.config.tile
        if cfg.rht:
            return self.weight()[ids]
        tile_rows = torch.unique(ids // t)
        per = self.in_features // t
        sel = (tile_rows[:, None] * per + torch.arange(per, device=ids.device)).reshape(-1)
        m = len(tile_rows) * t
        fused = self._fused()
        if fused is not None:
            w = decode_1mad(self.packed[sel].contiguous(), m, self.in_features, cfg.L, cfg.k) * fused[0]
        else:
            code = TrellisCode(codes=unpack_codes(self.packed[sel], cfg.k * cfg.V, cfg.seq_len // cfg.V),
                               start=None if self.start is None else self.start[sel].long(), scale=float(self.scale),
                               s_out=None, s_in=None, shape=(m, self.in_features))
            w = reconstruct_rotated(code, cfg)
        return w[torch.searchsorted(tile_rows, ids // t) * t + ids % t]

    def weight(self) -> torch.Tensor:
        s_out, s_in = self.signs()
        w_rot = self.rotated_weight()
        return w_rot if s_in is None else rht_ops.inverse_rht_weight(w_rot, s_out, s_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        fused = self._fused() if rows <= FUSED_MAX_ROWS and x.dtype == torch.float32 and not x.requires_grad else None
        if fused is None:
            return super().forward(x)
        alpha, s_in, s_out, (packed, m, n, L, k, parallel) = fused
        y = qmatvec_1mad(x.reshape(rows, n), packed, m, L, k, alpha, s_in, s_out,
                         torch.get_num_threads() if parallel else 1)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*x.shape[:-1], m)

    def _fused(self):
        """The operands (α, s_in, s_out, (packed, m, n, L, k, parallel)) of the 1MAD ops when they read this layer's
        format (on the CPU), else None; computed once per stored value (``set``, ``load_state_dict`` and moves reset
        them). ``parallel``: the layer is large enough for torch's thread count (else one thread)."""
        if self._fused_ready:
            return self._fused_cache
        cache = None
        cfg, m, n = self.config, self.out_features, self.in_features
        if self.packed.device.type == "cpu" and fused_supported(cfg):
            s_out, s_in = self.signs()
            cache = (float(self.scale) * one_mad_unit(cfg.L), None if s_in is None else s_in.float().contiguous(),
                     None if s_out is None else s_out.float().contiguous(),
                     (self.packed.contiguous(), m, n, cfg.L, cfg.k, m * n >= PARALLEL_MIN_WEIGHTS))
        self._fused_cache, self._fused_ready = cache, True
        return cache

    def _replan(self) -> None:
        self._fused_cache, self._fused_ready = None, False

    def _load_from_state_dict(self, *args, **kwargs):
        self._replan()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._replan()
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        """Copies and pickles leave the cached operands behind (they are recomputed from the buffers)."""
        return {**super().__getstate__(), "_fused_cache": None, "_fused_ready": False}

FUSED_MAX_ROWS = 16  # the fused kernel decodes once per call, so beyond a few rows decode + matmul wins
PARALLEL_MIN_WEIGHTS = 1 << 18  # smaller layers run on one thread (a fork/join costs more than it saves)


def fused_supported(cfg: TrellisConfig) -> bool:
    """Whether the compiled kernel reads this trellis format: 1MAD, V=1, tail-biting 16×16 tiles, and a state
    window plus k steps of codes that fit one 8-byte load (k ≤ 4, L ≤ 24)."""
    pb = -(-cfg.L // 8)
    return (cfg.code == "1mad" and cfg.V == 1 and cfg.tail_biting and cfg.tile == 16 and cfg.k <= 4
            and cfg.L <= 24 and 8 * cfg.k + 8 * pb - cfg.L < 40)


def quantized_linear(linear: nn.Linear, config) -> QuantizedLinear:
    """An empty quantised module of ``linear``'s shape for ``config`` (filled by ``set`` or ``load_state_dict``):
    the stored layer class its method registered (:mod:`mechlab.quant.registry`)."""
    from mechlab.quant.registry import method_for

    return method_for(config).make_layer(linear, config)
