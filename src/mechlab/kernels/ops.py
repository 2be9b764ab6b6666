"""The compiled kernels as PyTorch custom operators (``torch.ops.mechlab.*``, registered with ``torch.library``).

Each op has a schema (``SCHEMAS`` below), one implementation for every device (``CompositeExplicitAutograd``) that
runs the compiled kernel where it applies (CPU tensors, float32 where the kernel computes in float32, and the
kernel built: :func:`mechlab.kernels.libs.library`, the one availability check) and the pure-PyTorch path
otherwise, and a fake implementation (``torch.library.register_fake``: FakeTensor and the meta device) giving the
output's shape and dtype, so the ops run on meta tensors and trace under ``torch.compile`` without a graph break.
``bcjr_soft`` has its autograd formula (``torch.library.register_autograd``). The ops are defined with the
low-level ``torch.library.Library`` API (``torch.library.custom_op`` adds tens of microseconds per call, which
batch-1 decoding of small layers would feel); :func:`qmatvec_1mad`, the batch-1 decode step, also skips the
dispatcher for plain eager CPU tensors (see there).

* ``mechlab::viterbi(w, table, L, kV, start, end)`` -> (B, N) int64 — minimum-distortion trellis paths
  (mechlab/kernels/trellis.c; fallback :func:`mechlab.quant.trellis.viterbi_torch`).
* ``mechlab::bcjr_soft(w, table, L, kV, T, start, end, max_bytes)`` -> (B, N, V) — soft trellis decoding at
  temperature T, differentiable in w: its autograd formula is ``mechlab::bcjr_soft_backward`` (the analytic
  forward–backward of mechlab/quant/bcjr.py; kernel mechlab/kernels/bcjr.c).
* ``mechlab::decode_1mad(packed, m, n, L, k, threads)`` -> (m, n) float32 — the stored 1MAD codes as
  (byte sum − 510) of every state (mechlab/kernels/qmatvec.c).
* ``mechlab::qmatvec_1mad(x, packed, m, L, k, alpha, s_in, s_out, threads)`` -> (B, m) float32 — the fused decode
  + matrix-vector product y = s_out ⊙ H(α · W_code · H(s_in ⊙ x)) (mechlab/kernels/qmatvec.c; fallback: decode,
  inverse RHT, one matmul).

``threads`` 0 means torch's thread count. The shapes and formats are those of QTIP (Tseng et al. 2024,
arXiv:2406.11235); see docs/quantization.md.
"""


import torch
from torch import Tensor

from mechlab.kernels.libs import library

SCHEMAS = {
    "viterbi": "viterbi(Tensor w, Tensor table, int L, int kV, Tensor? start=None, Tensor? end=None) -> Tensor",
    "bcjr_soft": "bcjr_soft(Tensor w, Tensor table, int L, int kV, float T, Tensor? start, Tensor? end, "
                 "int max_bytes) -> Tensor",
    "bcjr_soft_backward": "bcjr_soft_backward(Tensor w, Tensor table, int L, int kV, float T, Tensor? start, "
                          "Tensor? end, int max_bytes, Tensor grad) -> Tensor",
    "decode_1mad": "decode_1mad(Tensor packed, int m, int n, int L, int k, int threads=0) -> Tensor",
    "qmatvec_1mad": "qmatvec_1mad(Tensor x, Tensor packed, int m, int L, int k, float alpha, Tensor? s_in, "
                    "Tensor? s_out, int threads=0) -> Tensor",
}
_LIB = torch.library.Library("mechlab", "DEF")
for _schema in SCHEMAS.values():
    _LIB.define(_schema)


def _impl(name: str):
    """Register the decorated function as op NAME's implementation on every device."""
    def register(fn):
        _LIB.impl(name, fn, "CompositeExplicitAutograd")
        return fn
    return register


def _cpu32(t: Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


@_impl("viterbi")
def _viterbi(w, table, L, kV, start=None, end=None):
    lib = library("trellis") if w.device.type == "cpu" else None
    if lib is None:
        from mechlab.quant.trellis import viterbi_torch

        return viterbi_torch(w, table, L, kV, start, end)
    return lib.viterbi(w, table, L, kV, start, end)


@torch.library.register_fake("mechlab::viterbi")
def _(w, table, L, kV, start=None, end=None):
    return w.new_empty(w.shape[0], w.shape[1], dtype=torch.int64)


def _bcjr(w, table, L, kV, T, start, end, max_bytes, grad):
    lib = library("bcjr") if _cpu32(w) else None
    if lib is not None:
        return lib.soft(w, table, L, kV, T, start, end, grad)
    from mechlab.quant.bcjr import soft_sweeps

    return soft_sweeps(w, table, L, kV, T, start, end, max_bytes, grad)


@_impl("bcjr_soft")
def _bcjr_soft(w, table, L, kV, T, start, end, max_bytes):
    return _bcjr(w, table, L, kV, T, start, end, max_bytes, None)


@_impl("bcjr_soft_backward")
def _bcjr_soft_backward(w, table, L, kV, T, start, end, max_bytes, grad):
    return _bcjr(w, table, L, kV, T, start, end, max_bytes, grad.contiguous())


@torch.library.register_fake("mechlab::bcjr_soft")
def _(w, table, L, kV, T, start, end, max_bytes):
    return torch.empty_like(w)


@torch.library.register_fake("mechlab::bcjr_soft_backward")
def _(w, table, L, kV, T, start, end, max_bytes, grad):
    return torch.empty_like(w)


def _bcjr_setup(ctx, inputs, output):
    w, table, L, kV, T, start, end, max_bytes = inputs
    ctx.save_for_backward(w, table, start, end)
    ctx.args = (L, kV, T, max_bytes)


def _bcjr_backward(ctx, grad_out):
    w, table, start, end = ctx.saved_tensors
    L, kV, T, max_bytes = ctx.args
    grad_w = torch.ops.mechlab.bcjr_soft_backward.default(w, table, L, kV, T, start, end, max_bytes, grad_out)
    return grad_w, *[None] * 7


torch.library.register_autograd("mechlab::bcjr_soft", _bcjr_backward, setup_context=_bcjr_setup)


def _decode_torch(packed: Tensor, m: int, n: int, L: int, k: int) -> Tensor:
    """The PyTorch decode of stored 1MAD codes: (byte sum − 510) of every state, (m, n) float32."""
    from mechlab.quant.qtip import from_tiles
    from mechlab.quant.trellis import states_from_codes, unpack_codes

    tile = 16
    s = states_from_codes(unpack_codes(packed.cpu(), k, tile * tile), L, k)
    x = (s * 34038481 + 76625530) & 0xFFFFFFFF
    total = sum((x >> (8 * i)) & 0xFF for i in range(4))
    return from_tiles((total - 510).float(), m, n, tile).to(packed.device)


@_impl("decode_1mad")
def _decode_1mad(packed, m, n, L, k, threads=0):
    lib = library("qmatvec") if packed.device.type == "cpu" else None
    if lib is None:
        return _decode_torch(packed, m, n, L, k)
    return lib.decode(packed, m, n, L, k, threads or None)


@torch.library.register_fake("mechlab::decode_1mad")
def _(packed, m, n, L, k, threads=0):
    return packed.new_empty(m, n, dtype=torch.float32)


@_impl("qmatvec_1mad")
def _qmatvec_1mad(x, packed, m, L, k, alpha, s_in, s_out, threads=0):
    lib = library("qmatvec") if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if lib is None:
        from mechlab.quant.rht import inverse_rht_weight

        w = decode_1mad(packed, m, x.shape[1], L, k) * alpha
        if s_in is not None:
            w = inverse_rht_weight(w, s_out.float(), s_in.float())
        return x.float() @ w.to(x.device).T
    return lib.matvec(x, packed, m, L, k, alpha, s_in, s_out, threads or None)


@torch.library.register_fake("mechlab::qmatvec_1mad")
def _(x, packed, m, L, k, alpha, s_in, s_out, threads=0):
    return x.new_empty(x.shape[0], m, dtype=torch.float32)


# the ops, as the callers use them (torch.ops.mechlab.NAME.default: OpOverloads, accepted by opcheck)
viterbi = torch.ops.mechlab.viterbi.default
bcjr_soft = torch.ops.mechlab.bcjr_soft.default
bcjr_soft_backward = torch.ops.mechlab.bcjr_soft_backward.default
decode_1mad = torch.ops.mechlab.decode_1mad.default
qmatvec_1mad_op = torch.ops.mechlab.qmatvec_1mad.default


def _plain_eager(x: Tensor) -> bool:
    """A plain float32 CPU tensor in eager mode: no compilation, no tensor subclass or torch function / dispatch
    mode that should see the op."""
    return (type(x) is Tensor and x.dtype == torch.float32 and x.device.type == "cpu"
            and not torch.compiler.is_compiling() and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0)


def qmatvec_1mad(x: Tensor, packed: Tensor, m: int, L: int, k: int, alpha: float, s_in: Tensor | None = None,
                 s_out: Tensor | None = None, threads: int = 0) -> Tensor:
    """``mechlab::qmatvec_1mad`` (see the module docstring): y (B, m) float32 for x (B, n). On plain float32 CPU
    tensors in eager mode with the kernel built, the kernel is called directly — the same function on the same
    operands as the op's implementation, without the dispatcher's round trip into Python (about 10 µs, a tenth of
    a batch-1 call on a 192×576 layer); everything else (torch.compile, meta and fake tensors, modes) goes through
    the op."""
    if _plain_eager(x):
        lib = library("qmatvec")
        if lib is not None:
            return lib.matvec(x, packed, m, L, k, alpha, s_in, s_out, threads or None)
    return qmatvec_1mad_op(x, packed, m, L, k, alpha, s_in, s_out, threads)

__all__ = ["SCHEMAS", "viterbi", "bcjr_soft", "bcjr_soft_backward", "decode_1mad", "qmatvec_1mad", "qmatvec_1mad_op"]
