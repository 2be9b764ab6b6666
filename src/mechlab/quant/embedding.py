"""The token embedding and the LM head quantised: one stored code read two ways.

An embedding table E (V, d) is stored as a quantised matrix of any registered method that can code it
(:attr:`mechlab.quant.registry.QuantMethod.table`): E = diag(r) Ẽ (H_d diag(s)) with Ẽ the stored matrix (V, d) of
the method's layer class (for trellis codes a :class:`~mechlab.quant.linear.TrellisLinear` without its own RHT,
exactly k bits per weight in tail-biting 16×16 tiles), ``s`` random input-side signs (bits), H_d the normalised
(block) Hadamard transform and ``r`` one fp16 scale per row (trellis codes have one global scale, and token rows
differ in norm). The rotation acts on the input (d) side only: a row of E is then one row of Ẽ rotated, so a
lookup decodes only the tiles of the looked-up rows (QTIP's RHT mixes the output side too, which would make every
row depend on a whole Hadamard block of rows).

* lookup (:meth:`QuantizedEmbedding.forward`): decode the 16-row tile rows holding the token ids, rotate, scale;
* head (:meth:`QuantizedEmbedding.attend`): logits = E x = r ⊙ Ẽ (H_d (s ⊙ x)), the fused decode + matvec of
  the stored layer for batch-1 decoding, decode + matmul for prefill.

A tied model keeps one stored code that serves both. Calibration: a tied table is coded against the proxy Hessian
of the head's input (the final normed hidden state, as any Linear); an untied embedding, only ever read by lookup,
against the identity (plain MSE of the rows), and the untied head is coded as an ordinary Linear layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mechlab.errors import ConfigError
from mechlab.quant import rht as rht_ops

SIGN_SEED_OFFSET = 7919  # the input-side signs' seed, apart from the stored layer's own seeds


class QuantizedEmbedding(nn.Module):
    """A quantised (V, d) table used as an embedding lookup and, when ``tied``, as the LM head's matmul.

    ``config`` is the model's quantisation config (its method's ``table`` hook gives the stored layer's config,
    whether the input side is rotated and whether rows get scales). The stored layer may have more rows than
    V (padded to whole tiles; never looked up, cut from the head's output). Buffers: ``inner.*`` (the stored
    layer), ``s_in`` (d sign bits, packed) and ``row_scale`` (fp16, one per padded row) when used."""

    def __init__(self, num_embeddings: int, embedding_dim: int, config, tied: bool):
        super().__init__()
        from mechlab.quant.linear import _pack_signs
        from mechlab.quant.registry import method_for

        method = method_for(config)
        if method.table is None:
            raise ConfigError(f"{config.method} cannot code an embedding table")
        self.num_embeddings, self.embedding_dim, self.config, self.tied = num_embeddings, embedding_dim, config, tied
        self.inner_config, self.rotate, scaled = method.table(config)
        pad = getattr(self.inner_config, "tile", 1)
        self.rows_stored = -(-num_embeddings // pad) * pad
        self.inner = method.make_layer(nn.Linear(embedding_dim, self.rows_stored, bias=False, device="meta"),
                                       self.inner_config)
        self.register_buffer("s_in", _pack_signs(torch.ones(embedding_dim)) if self.rotate else None)
        self.register_buffer("row_scale", torch.ones(self.rows_stored, dtype=torch.float16) if scaled else None)

    @staticmethod
    def why_not(num_embeddings: int, embedding_dim: int, config) -> str | None:
        """Why a (V, d) table cannot be coded with ``config`` (None: it can)."""
        from mechlab.quant.registry import method_for

        method = method_for(config)
        if method.table is None:
            return f"{config.method} cannot code an embedding table"
        inner = method.table(config)[0]
        pad = getattr(inner, "tile", 1)
        return method.why_not(nn.Linear(embedding_dim, -(-num_embeddings // pad) * pad, bias=False, device="meta"),
                              inner)

    def signs(self) -> torch.Tensor | None:
        """The input-side signs s (d,) float32 ±1, or None without rotation."""
        from mechlab.quant.linear import _unpack_signs

        return None if self.s_in is None else _unpack_signs(self.s_in, self.embedding_dim)

    def _unrotate(self, w_stored: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """Rows of E from rows of Ẽ: (H_d applied to each row) ⊙ s, times the rows' scales."""
        w = w_stored
        if self.rotate:
            w = rht_ops.hadamard(w) * self.signs()
        if self.row_scale is not None:
            r = self.row_scale.float()
            w = w * (r[:, None] if rows is None else r[rows][:, None])
        return w

    def fill(self, w: torch.Tensor, h: torch.Tensor | None, index: int = 0) -> torch.Tensor:
        """Code the float table w (V, d) into this module under the proxy Hessian h (d, d) float64 of the head's
        input (None: the identity, plain MSE of the rows); returns the table it decodes to, float32 (V, d)."""
        from mechlab.quant.linear import _pack_signs
        from mechlab.quant.registry import method_for

        w = w.detach().float().cpu()
        V, d = w.shape
        if (V, d) != (self.num_embeddings, self.embedding_dim):
            raise ConfigError(f"embedding of shape {tuple(w.shape)} does not fit a {V}×{d} quantised table")
        wp = torch.zeros(self.rows_stored, d)
        wp[:V] = w
        if self.row_scale is not None:
            r = wp.pow(2).mean(1).sqrt()
            r = torch.where(r > 0, r, torch.ones_like(r)).half()
            self.row_scale.copy_(r)
            wp = wp / r.float()[:, None]
        h = torch.eye(d, dtype=torch.float64) if h is None else h.double()
        if self.rotate:
            g = torch.Generator().manual_seed(getattr(self.config, "seed", 0) * 100003 + index + SIGN_SEED_OFFSET)
            s = rht_ops.random_signs(d, g)
            self.s_in.copy_(_pack_signs(s))
            wp = rht_ops.hadamard(wp * s)
            h = rht_ops.rht_hessian(h, s.double())
        method_for(self.inner_config).transform(self.inner, wp, h, self.inner_config, index)
        return self.weight[:V]

    @property
    def weight(self) -> torch.Tensor:
        """The whole decoded table E, (V, d) float32 (decodes every row: for inspection, not the hot path)."""
        return self._unrotate(self.inner.weight(), None)[: self.num_embeddings]

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (n,) int64 of E, (n, d) float32, decoding only the stored tiles that hold them."""
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise IndexError(f"token id out of range for an embedding of {self.num_embeddings} rows")
        return self._unrotate(self.inner.rows(ids), ids)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Embedding lookup: idx (...) int64 -> (..., d) float32."""
        ids, inverse = torch.unique(idx.reshape(-1), return_inverse=True)
        return self.rows(ids.to(self.inner_device))[inverse.to(self.inner_device)].reshape(*idx.shape, -1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The head's logits E x: x (..., d) -> (..., V), through the stored layer's matmul (fused for few rows)."""
        if self.rotate:
            x = rht_ops.hadamard(x * self.signs().to(x))
        y = self.inner(x)
        if self.row_scale is not None:
            y = y * self.row_scale.to(y.dtype)
        return y[..., : self.num_embeddings]

    @property
    def inner_device(self) -> torch.device:
        return next(self.inner.buffers()).device

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tied={self.tied}, {self.config}"


class _HeadRecorder(nn.Module):
    """Stands in for a float embedding during calibration: the same lookup and head, and the running sum of the
    head's input second moments (Σ x xᵀ in float64, with the row count)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.sum = torch.zeros(embedding.embedding_dim, embedding.embedding_dim, dtype=torch.float64)
        self.count = 0

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.embedding(idx)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.detach().reshape(-1, x.shape[-1]).float().cpu()
        self.sum += (xf.T @ xf).double()
        self.count += xf.shape[0]
        return nn.functional.linear(x, self.embedding.weight)

    def hessian(self) -> torch.Tensor:
        if self.count == 0:
            raise ConfigError("calibration never reached the tied LM head")
        return self.sum / self.count


def embedding_layout(model: nn.Module) -> tuple[nn.Embedding, bool]:
    """(the model's float token embedding ``model.embed``, whether the LM head is tied to it: ``model.lm_head`` is
    None); ConfigError for a model without that layout."""
    emb = getattr(model, "embed", None)
    if not isinstance(emb, nn.Embedding):
        raise ConfigError("embedding quantisation needs a model with a float nn.Embedding at .embed "
                          "(and an .lm_head: a Linear, or None when tied)")
    if not hasattr(model, "lm_head"):
        raise ConfigError("embedding quantisation needs a model with an .lm_head attribute (None when tied)")
    return emb, model.lm_head is None


__all__ = ["QuantizedEmbedding", "embedding_layout"]
