"""The bitshift trellis (QTIP, arXiv 2406.11235): Viterbi encode, tail-biting, decode, packing.

A sequence of T weights is cut into N = T/V steps of V weights. The state is an L-bit integer; each step shifts in
kV fresh bits, ``s_t = ((s_{t−1} << kV) | c_t) mod 2^L``, and the step's weights are reconstructed as
``code(s_t)``. Storing the codes c_t costs exactly k bits per weight; with tail-biting the bitstream is circular
(the first state's older bits are the stream's last bits), so nothing else is stored.

Viterbi without gathers: the predecessors of s are ``(p << (L−kV)) | (s >> kV)`` for p < 2^kV, so viewing the
cost vector as (2^kV, 2^(L−kV)) one min over the first axis serves all 2^kV successors of each group: O(2^L) work
per step. :func:`viterbi` runs the custom op ``mechlab::viterbi``: the compiled kernel when it builds, else
:func:`viterbi_torch`.
"""

from __future__ import annotations

import numpy as np
import torch

from mechlab.quant.codes import code_table


def step_distortion(table: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """Squared distance of every state's value to the step's weights: table (S, V), w_t (B, V) -> (B, S)."""
    return ((table.unsqueeze(0) - w_t.unsqueeze(1)) ** 2).sum(-1)


def viterbi_torch(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, start: torch.Tensor | None = None,
                  end: torch.Tensor | None = None) -> torch.Tensor:
    """Minimum-distortion state paths, (B, N) int64, for w (B, N, V) under the code ``table`` (2^L, V).

    ``start`` (B,) restricts the first state to ``s >> kV == start``; ``end`` (B,) restricts the last state to
    ``s mod 2^(L−kV) == end`` (the two halves of the tail-biting constraint)."""
    B, N, _ = w.shape
    S, P = 1 << L, 1 << kV
    G = S // P
    states = torch.arange(S)
    cost = step_distortion(table, w[:, 0])
    if start is not None:
        cost = torch.where((states >> kV).unsqueeze(0) == start.unsqueeze(1), cost, torch.inf)
    back = torch.empty(N, B, G, dtype=torch.uint8)
    for t in range(1, N):
        m, arg = cost.view(B, P, G).min(1)
        back[t] = arg
        cost = (m.unsqueeze(-1) + step_distortion(table, w[:, t]).view(B, G, P)).view(B, S)
    if end is not None:
        cost = torch.where((states & (G - 1)).unsqueeze(0) == end.unsqueeze(1), cost, torch.inf)
    path = torch.empty(B, N, dtype=torch.int64)
    s = cost.argmin(1)
    rows = torch.arange(B)
    for t in range(N - 1, 0, -1):
        path[:, t] = s
        g = s >> kV
        s = back[t, rows, g].long() * G + g
    path[:, 0] = s
    return path


def viterbi(w: torch.Tensor, table: torch.Tensor, L: int, kV: int, start: torch.Tensor | None = None,
            end: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`viterbi_torch`'s contract, through the custom op ``mechlab::viterbi`` (the compiled kernel when it
    builds, else :func:`viterbi_torch`; :mod:`mechlab.kernels.ops`)."""
    from mechlab.kernels import viterbi as viterbi_op

    return viterbi_op(w, table, L, kV, start, end)


def encode(w: torch.Tensor, L: int, k: int, V: int, code: str, tail_biting: bool = True, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Trellis-encode sequences w (B, T) in the code's unit-RMS basis.

    Returns (codes (B, N) with kV bits each, start (B,) or None). With ``tail_biting`` (two passes): Viterbi on
    the sequence rolled by half, read the state at the original position 0, and re-run with the first state's
    older bits and the last state's newer bits both fixed to that overlap, so the stream is circular and
    ``start`` is None. Without it, one free pass, and the first state's L−kV older bits are returned as ``start``
    (to be stored beside the codes)."""
    B, T = w.shape
    if T % V:
        raise ValueError(f"sequence length {T} is not a multiple of V={V}")
    N, kV = T // V, k * V
    if N * kV < L:
        raise ValueError(f"a sequence of {T} weights holds {N * kV} bits, fewer than the L={L} state bits")
    table = code_table(code, L, V, seed)
    steps = w.float().reshape(B, N, V)
    if not tail_biting:
        path = viterbi(steps, table, L, kV)
        return path & ((1 << kV) - 1), path[:, 0] >> kV
    half = N // 2
    first = viterbi(torch.roll(steps, half, dims=1), table, L, kV)
    overlap = first[:, half] >> kV
    path = viterbi(steps, table, L, kV, start=overlap, end=overlap)
    return path & ((1 << kV) - 1), None


def states_from_codes(codes: torch.Tensor, L: int, kV: int, start: torch.Tensor | None = None) -> torch.Tensor:
    """The state of every step from the stored codes (B, N): circular (tail-biting) when ``start`` is None, else
    with ``start`` (B,) as the L−kV older bits of the first state. O(L/kV) work per weight."""
    B, N = codes.shape
    c = codes.long()
    mask = (1 << L) - 1
    s = torch.zeros_like(c)
    for j in range(-(-L // kV)):  # ceil(L / kV) most recent codes make up a state
        shifted = torch.roll(c, j, dims=1)
        if start is not None:
            shifted[:, :j] = 0
        s |= (shifted << (j * kV)) & mask
    if start is not None:
        t = torch.arange(N)
        shift = (t + 1) * kV
        prefix = torch.where(shift < L, (start.long().unsqueeze(1) << shift.clamp(max=62)) & mask, 0)
        s |= prefix
    return s


def decode(codes: torch.Tensor, L: int, k: int, V: int, code: str, start: torch.Tensor | None = None, seed: int = 0
           ) -> torch.Tensor:
    """Reconstructed sequences (B, T) from codes (B, N), in the code's unit-RMS basis."""
    table = code_table(code, L, V, seed)
    s = states_from_codes(codes, L, k * V, start)
    return table[s].reshape(codes.shape[0], -1)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integers of ``bits`` bits each (..., N) into bytes (..., ceil(N·bits/8)) uint8, MSB first."""
    c = codes.cpu().numpy().astype(np.uint16)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint16)
    bitarr = ((c[..., None] >> shifts) & 1).astype(np.uint8).reshape(*c.shape[:-1], -1)
    return torch.from_numpy(np.packbits(bitarr, axis=-1))


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: (..., bytes) uint8 -> (..., n) int64."""
    bitarr = np.unpackbits(packed.cpu().numpy(), axis=-1)[..., : n * bits].reshape(*packed.shape[:-1], n, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return torch.from_numpy(bitarr.astype(np.int64) @ weights)
