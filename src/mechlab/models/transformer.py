"""A Llama-style decoder-only Transformer, readable top to bottom, and its looped relatives.

RMSNorm pre-norm blocks, rotary position embeddings (rotate-half convention, configurable base), grouped-query
attention through ``scaled_dot_product_attention``, SwiGLU MLP, no biases, tied or untied LM head.
Generation keeps a :class:`KVCache`, whose slots are indexed by the order in which attention layers run.

One class covers the four families of arXiv 2604.21254 through config switches (``cfg.arch``):
``transformer`` (blocks in a row), ``looped`` (begin blocks, the middle blocks applied ``n_loops`` times, end
blocks), ``hyperloop`` (looped, with ``n_streams`` residual streams and a hyper-connection after each loop) and
``mhc`` (blocks in a row, streams, a hyper-connection at every attention and MLP sub-layer).

PMNet (arXiv 2605.13370) is three more switches of the plain family: sliding-window attention (``cfg.window``, in
the one attention module and its KV cache, which then keeps only the last window − 1 positions), per-head QK-RMSNorm
(``cfg.qk_norm``) and the phasor memory of :mod:`mechlab.models.phasor` (``cfg.memory``), called between each
block's attention and MLP. A sliding-window model has no length limit when streamed through a cache
(:meth:`Transformer.forward_chunked`, generation): its RoPE angles are computed for positions past max_seq_len.

Gemma 3 (arXiv 2503.19786) is five switches more (:class:`ModelConfig`): embeddings × √d_model, post-norms on each
sub-layer's output, GeGLU, and global layers among the sliding-window ones (every ``global_every``-th), the local
layers with their own RoPE base. With a local base the blocks receive both RoPE tables as pairs
``(cos_global, cos_local)``, ``(sin_global, sin_local)`` and each takes its own; the KV cache keeps the full
history of the global layers and the last window − 1 positions of the local ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.errors import ConfigError
from mechlab.models.config import ModelConfig
from mechlab.models.hyper import HyperConnection
from mechlab.models.phasor import PhasorMemory


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_tables(head_dim: int, max_len: int, base: float, freq_factors: tuple[float, ...] | None = None,
                start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (max_len − start, head_dim), float32 computed in float64, of positions start … max_len − 1:
    angle(t, i) = t * base^(-2i/D) / freq_factors[i] for i < D/2, repeated for the second half (the halves
    convention of :func:`apply_rope`). ``freq_factors`` (D/2 divisors) are RoPE frequency scaling: linear
    interpolation (all = factor, Chen et al. 2023), llama3's per-frequency factors, llama.cpp's ``rope_freqs``."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if freq_factors is not None:
        inv_freq = inv_freq / torch.tensor(freq_factors, dtype=torch.float64)
    angles = torch.outer(torch.arange(start, max_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin: (T, D), or (B, 1, T, D) for a ragged batch. Rotates the pairs (i, i + D/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class KVCache:
    """Keys and values of every attention call, preallocated to ``max_len`` positions.

    A ragged batch (prompts of different lengths) is left-padded: ``pad`` (B,) gives each row's number of padding
    positions, which its queries never attend to and which do not count in its RoPE positions (so each row computes
    what it would alone). With ``window`` (sliding-window attention) it keeps only the last window − 1 positions of
    each slot, whatever the length (``max_len`` is then no limit), and ``phasor`` holds the phasor memory's streaming state: per write
    level h a (B, N^h, N·M) tensor of the last U mod 2π of every (sequence, group)."""

    def __init__(self, batch: int, max_len: int, window: int | None = None, pad: torch.Tensor | None = None):
        self.batch, self.max_len, self.window = batch, max_len, window
        self.pad = pad  # (B,) left-padding positions of each row in a ragged batch (None: every row starts at 0)
        self.pos = 0  # tokens already cached
        self.slots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.phasor: dict[int, torch.Tensor] = {}

    def compact(self, keep: torch.Tensor) -> None:
        """Keep the rows ``keep`` (B,) bool of the batch (rows that finished generating leave it)."""
        self.slots = {s: (k[keep], v[keep]) for s, (k, v) in self.slots.items()}
        self.phasor = {h: u[keep] for h, u in self.phasor.items()}
        if self.pad is not None:
            self.pad = self.pad[keep.to(self.pad.device)]
        self.batch = int(keep.sum())

    def update(self, slot: int, k: torch.Tensor, v: torch.Tensor,
               window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, Hkv, T, D) at positions pos..pos+T; return the cache up to pos+T (with a window: the
        positions pos + T − k_len … pos + T − 1 of the k_len returned). ``window`` is the calling layer's own
        window (Gemma's local layers in a cache of global ones); None: the cache's."""
        window = self.window if window is None else window
        if window is not None:
            if slot in self.slots:
                k = torch.cat([self.slots[slot][0], k], dim=2)
                v = torch.cat([self.slots[slot][1], v], dim=2)
            first = max(k.shape[2] - (window - 1), 0)
            self.slots[slot] = (k[:, :, first:], v[:, :, first:])
            return k, v
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ConfigError(f"KV cache holds {self.max_len} positions; {end} requested")
        if slot not in self.slots:
            shape = (k.shape[0], k.shape[1], self.max_len, k.shape[3])
            self.slots[slot] = (k.new_zeros(shape), v.new_zeros(shape))
        ck, cv = self.slots[slot]
        ck[:, :, self.pos : end] = k
        cv[:, :, self.pos : end] = v
        return ck[:, :, :end], cv[:, :, :end]


def window_mask(q_start: int, n_q: int, k_start: int, n_k: int, window: int, device=None) -> torch.Tensor:
    """Boolean (n_q, n_k) mask of sliding-window causal attention: query position i sees key position j iff
    0 ≤ i − j < window (queries at q_start…, keys at k_start…)."""
    d = (torch.arange(q_start, q_start + n_q, device=device).unsqueeze(1)
         - torch.arange(k_start, k_start + n_k, device=device).unsqueeze(0))
    return (d >= 0) & (d < window)


class Attention(nn.Module):
    """Grouped-query attention with RoPE; optional per-head QK-RMSNorm (a norm over head_dim with weights shared
    by the heads, applied before RoPE) and a sliding window of ``window`` positions (``cfg.window`` unless given:
    one attention module for every local-attention model)."""

    def __init__(self, cfg: ModelConfig, window: int | None = None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.window = cfg.window if window is None else window
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        # SP: 1/√head_dim; μP: 1/head_dim, anchored to SP at the base width
        self.scale = None if cfg.parametrization == "sp" else math.sqrt(cfg.mup_base_width / cfg.n_heads) / cfg.head_dim
        self.q = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.k = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, slot: int = 0) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(slot, k, v, self.window)
        if self.window is not None:  # keys at positions past + T − k_len … past + T − 1
            mask = window_mask(past, T, past + T - k.shape[2], k.shape[2], self.window, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                               enable_gqa=self.n_kv_heads != self.n_heads)
            return self.o(y.transpose(1, 2).reshape(B, T, -1))
        if cache is not None and cache.pad is not None:  # a ragged batch: causal, no padding keys (a pad sees itself)
            qpos = torch.arange(past, past + T, device=x.device)[:, None]
            kpos = torch.arange(k.shape[2], device=x.device)[None, :]
            real = kpos >= cache.pad.to(x.device)[:, None, None]  # (B, 1, S) broadcast over queries
            mask = ((kpos <= qpos) & real | (kpos == qpos)).unsqueeze(1)  # (B, 1, T, S)
            causal = False
        elif T == 1:  # one new token sees everything cached
            mask, causal = None, False
        elif past == 0:
            mask, causal = None, True
        else:  # a chunk after a cached prefix
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale,
                                           enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    """Gated MLP down(act(gate(x)) · up(x)), (…, d_model) -> (…, d_model): SwiGLU with act = SiLU, GeGLU (Gemma)
    with act = GELU, tanh approximation (``act="gelu_tanh"``)."""

    def __init__(self, d_model: int, d_ff: int, act: str = "silu"):
        super().__init__()
        self.act = act
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x)
        g = F.silu(g) if self.act == "silu" else F.gelu(g, approximate="tanh")
        return self.down(g * self.up(x))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then + mlp(norm(x)); with a phasor memory, its write and read in between.
    With ``cfg.post_norms`` (Gemma): x + post_attn_norm(attn(norm(x))), then x + post_mlp_norm(mlp(norm(x))).
    Layer ``layer`` attends through the window or globally as ``cfg.is_local(layer)`` says; given RoPE tables as
    (global, local) pairs, a local layer takes the second."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.local = cfg.is_local(layer)
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        if not self.local:  # a global layer of a sliding-window model
            self.attn.window = None
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff, cfg.mlp_act)
        self.post_attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps) if cfg.post_norms else None
        self.post_mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps) if cfg.post_norms else None

    def forward(self, x, cos, sin, cache: KVCache | None = None, slot: int = 0, memory: PhasorMemory | None = None,
                state=None) -> torch.Tensor:
        if isinstance(cos, tuple):  # (global, local) RoPE tables
            cos, sin = cos[self.local], sin[self.local]
        h = self.attn(self.attn_norm(x), cos, sin, cache, slot)
        x = x + (h if self.post_attn_norm is None else self.post_attn_norm(h))
        if memory is not None:  # [WRITE]; x + READ(x) (arXiv 2605.13370)
            x = memory.layer(x, slot, state, cache)
        h = self.mlp(self.mlp_norm(x))
        return x + (h if self.post_mlp_norm is None else self.post_mlp_norm(h))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        n_hc = {"hyperloop": cfg.n_loops, "mhc": 2 * cfg.n_layers}.get(cfg.arch, 0)
        self.hc = nn.ModuleList(HyperConnection(cfg.n_streams, cfg.d_model, cfg.hres, cfg.sinkhorn_iters) for _ in range(n_hc))
        self.loop_emb = nn.Parameter(torch.empty(cfg.n_loops, cfg.d_model)) if cfg.loop_embedding else None
        self.memory = PhasorMemory(cfg) if cfg.memory else None
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_base, cfg.rope_freq_factors)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if cfg.rope_local_base is not None:  # Gemma: the sliding-window layers' own base
            cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_local_base, cfg.rope_freq_factors)
            self.register_buffer("rope_cos_local", cos, persistent=False)
            self.register_buffer("rope_sin_local", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, init_std) for block, embedding and head matrices, output projections scaled by 1/sqrt(2·depth);
        under μP block matrices by a further 1/√m; norms at 1. Loop embeddings are drawn at the token embedding's
        scale, N(0, init_std): the Hyperloop authors' code always gives e_l the token embedding's scale (N(0, 1)
        for both under PyTorch defaults, N(0, 0.02) for both under GPT-2 init; arXiv 2604.21254), and an e_l
        ~50× the hidden state at init would drown the token signal. Hyper-connection maps keep their own
        (PyTorch default) init; the phasor memory its own (:meth:`PhasorMemory.reset_parameters`)."""
        std = self.config.init_std
        if self.memory is not None:
            self.memory.reset_parameters(std)
        for name, p in self.named_parameters():
            if name.startswith(("hc.", "memory.")) or name == "loop_emb":
                continue
            if p.dim() >= 2:
                scale = 1 / math.sqrt(2 * self.config.depth) if name.endswith(("attn.o.weight", "mlp.down.weight")) else 1.0
                if name.startswith("blocks."):
                    scale /= math.sqrt(self.config.width_mult)
                nn.init.normal_(p, 0.0, std * scale)
            else:
                nn.init.ones_(p)
        if self.loop_emb is not None:
            nn.init.normal_(self.loop_emb, 0.0, std)

    @property
    def layout(self) -> tuple[list[Block], list[Block], list[Block]]:
        """(begin, middle, end) blocks; everything is 'begin' in the unlooped families."""
        cfg = self.config
        if not cfg.is_looped:
            return list(self.blocks), [], []
        b, m = cfg.n_begin, cfg.n_middle
        return list(self.blocks[:b]), list(self.blocks[b : b + m]), list(self.blocks[b + m :])

    def body(self, x: torch.Tensor, cos, sin, cache: KVCache | None = None, trace: dict | None = None) -> torch.Tensor:
        """Hidden states after every block, (B, T, C) -> (B, T, C), before the final norm.

        With a ``trace`` dict, a looped model appends per loop the middle blocks' output to ``trace["middle"]`` and
        the residual state after the loop (streams averaged for Hyperloop) to ``trace["after_loop"]``.
        """
        cfg = self.config
        slot = 0
        if self.memory is not None:  # the plain family (validated): blocks in a row, the memory between sub-layers
            state = self.memory.begin(x)
            for i, blk in enumerate(self.blocks):
                x = blk(x, cos, sin, cache, i, self.memory, state)
            return x

        def run(blocks, h):
            nonlocal slot
            for blk in blocks:
                h = blk(h, cos, sin, cache, slot)
                slot += 1
            return h

        def streams(h):  # n copies of the hidden state, no learned expansion
            return h.unsqueeze(-2).expand(*h.shape[:-1], cfg.n_streams, cfg.d_model)

        if cfg.arch == "mhc":
            y = streams(x)
            for i, blk in enumerate(self.blocks):
                y = self.hc[2 * i](y, lambda u: blk.attn(blk.attn_norm(u), cos, sin, cache, i))
                y = self.hc[2 * i + 1](y, lambda u: blk.mlp(blk.mlp_norm(u)))
            return y.mean(-2)
        begin, middle, end = self.layout
        x = run(begin, x)
        if middle:
            y = streams(x) if cfg.arch == "hyperloop" else None
            for loop in range(cfg.n_loops):
                def step(u, loop=loop):
                    u = run(middle, u)
                    if trace is not None:
                        trace.setdefault("middle", []).append(u)
                    return u if self.loop_emb is None else u + self.loop_emb[loop]
                if y is None:
                    x = step(x)
                else:
                    y = self.hc[loop](y, step)
                if trace is not None:
                    trace.setdefault("after_loop", []).append(x if y is None else y.mean(-2))
            if y is not None:
                x = y.mean(-2)
        return run(end, x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.config.width_mult != 1.0:  # μP readout
            x = x / self.config.width_mult
        if self.lm_head is not None:
            return self.lm_head(x)
        attend = getattr(self.embed, "attend", None)  # a quantised tied table (mechlab.quant.embedding): its matmul
        return F.linear(x, self.embed.weight) if attend is None else attend(x)

    def lr_multipliers(self) -> dict[str, float]:
        """Per-parameter learning-rate factors of the parameterisation: 1/m for the block matrices under μP."""
        m = self.config.width_mult
        return {n: (1.0 / m if n.startswith("blocks.") and p.dim() >= 2 else 1.0) for n, p in self.named_parameters()}

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """idx (B, T) -> (logits (B, T, V), mean cross-entropy against targets or None)."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        cfg = self.config
        if cache is not None and cache.pad is not None:  # a ragged batch: each row's own positions, (B, 1, T, D)
            pos = (torch.arange(start, start + T, device=idx.device)[None, :]
                   - cache.pad.to(idx.device)[:, None]).clamp(min=0)
            if int(pos.max()) >= cfg.max_seq_len:
                raise ConfigError(f"sequence of {int(pos.max()) + 1} tokens exceeds max_seq_len={cfg.max_seq_len}")
            cos, sin = self.rope_cos[pos].unsqueeze(1), self.rope_sin[pos].unsqueeze(1)
        elif start + T <= cfg.max_seq_len:
            cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
            if cfg.rope_local_base is not None:
                cos = (cos, self.rope_cos_local[start : start + T])
                sin = (sin, self.rope_sin_local[start : start + T])
        elif cfg.all_local:  # local attention has no length limit: angles of the positions past the table
            base = cfg.rope_base if cfg.rope_local_base is None else cfg.rope_local_base
            tables = rope_tables(cfg.head_dim, start + T, base, cfg.rope_freq_factors, start=start)
            cos, sin = (t.to(self.rope_cos.device) for t in tables)
        else:
            raise ConfigError(f"sequence of {start + T} tokens exceeds max_seq_len={cfg.max_seq_len}")
        x = self.embed(idx)
        if cfg.embed_scale:  # Gemma: × √d_model (a float32 constant, as Hugging Face and llama.cpp)
            x = x * x.new_tensor(math.sqrt(cfg.d_model))
        x = self.body(x, cos, sin, cache)
        if cache is not None:
            cache.pos += T
        logits = self.head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def forward_chunked(self, idx: torch.Tensor, chunk: int) -> torch.Tensor:
        """Logits (B, T, V) of idx (B, T) computed ``chunk`` tokens at a time through a :class:`KVCache` (the
        streaming path of generation and long-document evaluation): equal to one full pass up to rounding. With a
        sliding window and the phasor memory the state carried between chunks is of constant size."""
        if chunk <= 0:
            raise ConfigError(f"chunk must be a positive number of tokens, got {chunk}")
        cache = KVCache(idx.shape[0], idx.shape[1], window=self.config.window if self.config.all_local else None)
        return torch.cat([self(idx[:, i : i + chunk], cache=cache)[0] for i in range(0, idx.shape[1], chunk)], dim=1)

    def num_params(self, exclude_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding and self.lm_head is not None:
            n -= self.embed.weight.numel()
        return n

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int | Sequence[int], temperature: float = 1.0,
                 top_k: int | None = None, use_cache: bool = True, generator: torch.Generator | None = None,
                 eos_id: int | Iterable[int] | None = None,
                 on_token: Callable[[torch.Tensor], None] | None = None, pad: torch.Tensor | None = None,
                 prefill_chunk: int | None = None) -> torch.Tensor:
        """Sample continuations of idx (B, T). temperature 0 is greedy; top_k keeps the k likeliest tokens;
        ``on_token`` sees every new column (B, 1) as it is made (streaming); a row is done once it has produced one
        of ``eos_id`` (an id or several: every end-of-generation id of a model) or its ``max_new_tokens`` (one count,
        or one per row), and generation stops when every row is done (the columns after a row is done are filler).

        A ragged batch: the rows left-padded to one length and ``pad`` (B,) int64 their padding counts; each row
        then gets what it would get alone (its own positions, no attention to padding), up to float rounding.
        ``prefill_chunk``: the prompt goes through the cache this many tokens at a time (bounds the prefill's
        attention memory for long batched prompts). Raises ConfigError when prompt + new tokens exceed the model's
        context, or for a ragged batch on a sliding-window model."""
        limits = torch.as_tensor(max_new_tokens, dtype=torch.long).expand(idx.shape[0])
        steps = int(limits.max()) if idx.shape[0] else 0
        if steps <= 0:
            return idx
        total = idx.shape[1] + steps
        # a ragged row's own length: its prompt without padding + its own new tokens (the cache holds the padding)
        longest = total if pad is None else int((idx.shape[1] - pad + limits).max())
        if longest > self.config.max_seq_len and not (use_cache and self.config.all_local):
            raise ConfigError(f"prompt + new tokens = {longest} exceeds max_seq_len={self.config.max_seq_len}")
        if pad is not None and (not use_cache or self.config.window is not None or self.config.memory):
            raise ConfigError("a ragged (left-padded) batch needs the KV cache and a model without sliding windows "
                              "or phasor memory")
        cache = KVCache(idx.shape[0], total, window=self.config.window if self.config.all_local else None,
                        pad=pad) if use_cache else None
        stops = None if eos_id is None else torch.tensor([eos_id] if isinstance(eos_id, int) else sorted(eos_id))
        done = torch.zeros(idx.shape[0], dtype=torch.bool)
        out = idx
        if use_cache and prefill_chunk and idx.shape[1] > prefill_chunk:
            for i in range(0, idx.shape[1] - 1, prefill_chunk):  # all but the last prompt token
                self(idx[:, i : min(i + prefill_chunk, idx.shape[1] - 1)], cache=cache)
            step_input = idx[:, -1:]
        else:
            step_input = idx
        active = torch.arange(idx.shape[0])  # the rows still decoding (a ragged batch drops the finished ones)
        for t in range(steps):
            logits, _ = self(step_input if use_cache else out, cache=cache)
            nxt = sample_next(logits[:, -1, :].float(), temperature, top_k, generator)
            column = nxt
            if len(active) < out.shape[0]:  # after a compaction: finished rows repeat their last token (filler)
                column = out[:, -1:].clone()
                column[active] = nxt
            out = torch.cat([out, column], dim=1)
            step_input = nxt
            if on_token is not None:
                on_token(column)
            done[active] |= limits[active] <= t + 1
            if stops is not None:
                done[active] |= torch.isin(nxt[:, 0], stops)
            if bool(done.all()):
                break
            finished = done[active]
            if pad is not None and int(finished.sum()) * 4 >= len(active):  # a quarter done: compact the batch
                keep = ~finished
                active, step_input = active[keep], step_input[keep]
                cache.compact(keep)
        return out


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, generator=None) -> torch.Tensor:
    """One token per row from logits (B, V)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
