"""Model configuration: one frozen dataclass and named presets."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from mechlab.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU, no biases.

    ``n_kv_heads`` defaults to ``n_heads`` (plain multi-head attention); ``d_ff`` defaults to 8/3·d_model
    rounded up to a multiple of 32; ``attn_head_dim`` to d_model / n_heads.

    PMNet (arXiv 2605.13370, docs/pmnet.md) is a set of switches, all off by default: ``window`` (sliding-window
    attention: a query at position t sees keys t − window + 1 … t), ``qk_norm`` (per-head RMSNorm of queries and
    keys before RoPE) and ``memory`` (the phasor memory of :mod:`mechlab.models.phasor`: a write every
    ``mem_write_every`` layers, a read at every layer, ``mem_slots`` = N slots of ``mem_dim`` = M phases,
    ``mem_read_heads`` = R read heads; ``mem_cumsum`` False is the authors' ablation U_t = Δ_t, no memory across
    tokens; ``mem_grad_scale`` divides the gradient of Δ by √(segment length) in training).

    Gemma 3 (Gemma Team, "Gemma 3 Technical Report", arXiv 2503.19786; the layout of Hugging Face's
    ``modeling_gemma3.py`` and llama.cpp's ``gemma3`` graph) is five more switches of the plain family, all off by
    default: ``embed_scale`` (token embeddings multiplied by √d_model), ``post_norms`` (an RMSNorm on the output of
    attention and of the MLP before each residual add, besides the pre-norms), ``mlp_act`` = "gelu_tanh" (GeGLU:
    GELU with the tanh approximation in place of SiLU), ``global_every`` = n (with ``window``: layers n−1, 2n−1, …
    attend to every earlier position, the others through the window) and ``rope_local_base`` (the RoPE base of the
    sliding-window layers; ``rope_base`` stays the global layers' base).
    """

    vocab_size: int = 259
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    rope_base: float = 10000.0
    # RoPE frequency scaling: divisors of the head_dim/2 inverse frequencies base^(-2i/D), or None for none.
    # Linear position interpolation is every divisor = factor; llama3-style scaling and llama.cpp's rope_freqs
    # tensor are per-frequency divisors (the project's own models never set it; imports do).
    rope_freq_factors: tuple[float, ...] | None = None
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # Architecture family (arXiv 2604.21254): "transformer", "looped" (b→m×L→e, one stream),
    # "hyperloop" (looped, n streams, hyper-connections after each loop) or "mhc" (unlooped, n streams,
    # hyper-connections at every attention and MLP sub-layer).
    arch: str = "transformer"
    n_begin: int = 0  # looped families: begin / middle / end layers; n_layers is their sum
    n_middle: int = 0
    n_end: int = 0
    n_loops: int = 1
    loop_embedding: bool = False  # a learned vector added to the middle block's output after loop l
    n_streams: int = 1  # residual streams (hyperloop, mhc)
    hres: str = "diagonal"  # H_res of the hyper-connections: "identity", "diagonal" or "sinkhorn"
    sinkhorn_iters: int = 20
    # Parameterisation in width (arXiv 2604.21691): "sp" standard, or "mup" (Yang et al., μP for
    # Adam): hidden matrices initialised with std init_std/√m and trained at lr/m, logits multiplied by 1/m,
    # attention scores by √(base head size)/head size, with m = d_model / mup_base_width (all as in SP at m = 1).
    parametrization: str = "sp"
    mup_base_width: int = 128
    # PMNet switches (arXiv 2605.13370; docs/pmnet.md); all off by default
    attn_head_dim: int | None = None  # head size when n_heads × head size ≠ d_model (PMNet: 12 × 64 at d_model 512)
    window: int | None = None  # sliding-window attention over this many positions (the query's own included)
    qk_norm: bool = False  # per-head RMSNorm of queries and keys (weights of head_dim, shared by the heads)
    memory: bool = False  # the phasor memory: writes forming the routing tree, reads at every layer
    mem_slots: int = 4  # N: slots per group (also the branching factor of the routing tree)
    mem_dim: int = 64  # M: phases per slot
    mem_read_heads: int = 2  # R
    mem_write_every: int = 1  # P: a write at layers 0, P, 2P, ... (level h = layer // P)
    mem_cumsum: bool = True  # False: U_t = Δ_t (the authors' ablation: no memory across tokens)
    mem_grad_scale: bool = True  # straight-through gradient scale 1/max(1, √n_seg) on Δ in training
    # Gemma 3 switches (arXiv 2503.19786); all off by default
    embed_scale: bool = False  # token embeddings × √d_model
    post_norms: bool = False  # RMSNorm of each sub-layer's output before its residual add
    mlp_act: str = "silu"  # gated MLP activation: "silu" (SwiGLU) or "gelu_tanh" (GeGLU, tanh-approximated GELU)
    global_every: int | None = None  # with window: layer i attends globally iff (i + 1) % global_every == 0
    rope_local_base: float | None = None  # RoPE base of the sliding-window layers (None: rope_base)

    def __post_init__(self) -> None:
        if self.is_looped:
            object.__setattr__(self, "n_layers", self.n_begin + self.n_middle + self.n_end)
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 32 * -(-(8 * self.d_model // 3) // 32))
        if self.rope_freq_factors is not None:  # a JSON list comes back as a tuple: the config stays hashable
            object.__setattr__(self, "rope_freq_factors", tuple(float(f) for f in self.rope_freq_factors))
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.d_model // self.n_heads

    @property
    def mem_levels(self) -> int:
        """Write levels of the phasor memory: ceil(n_layers / mem_write_every) (0 without memory)."""
        return -(-self.n_layers // self.mem_write_every) if self.memory else 0

    @property
    def receptive_field(self) -> int | None:
        """Positions back a token's output can see through attention alone: depth × (window − 1) for sliding
        windows (None: unbounded, full causal attention)."""
        return None if not self.all_local else self.depth * (self.window - 1)

    @property
    def all_local(self) -> bool:
        """Every layer attends through the sliding window (no global layers): no length limit when streamed."""
        return self.window is not None and self.global_every is None

    def is_local(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) attends through the sliding window."""
        return self.window is not None and (self.global_every is None or (layer + 1) % self.global_every != 0)

    @property
    def width_mult(self) -> float:
        """m = d_model / mup_base_width under μP; 1 under SP."""
        return self.d_model / self.mup_base_width if self.parametrization == "mup" else 1.0

    @property
    def is_looped(self) -> bool:
        """A b→m×L→e family (looped, hyperloop)."""
        return self.arch in ("looped", "hyperloop")

    @property
    def depth(self) -> int:
        """Unrolled depth: layers applied per token (b + m·L + e for looped families)."""
        if self.is_looped:
            return self.n_begin + self.n_middle * self.n_loops + self.n_end
        return self.n_layers

    def validate(self) -> None:
        for f in fields(self):  # a switch is a bool: "false" (a truthy string) or 0 would silently mean something else
            if isinstance(f.default, bool) and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"model config: {f.name} must be true or false, got {getattr(self, f.name)!r}")
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {v!r}")
        if self.attn_head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(f"model config: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"model config: head_dim={self.head_dim} must be even for RoPE")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"model config: n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if not self.rope_base > 1 or not self.norm_eps > 0 or not self.init_std > 0:
            raise ConfigError("model config: rope_base must be > 1, norm_eps and init_std > 0")
        factors = self.rope_freq_factors
        if factors is not None and (len(factors) != self.head_dim // 2
                                    or not all(math.isfinite(f) and f > 0 for f in factors)):
            raise ConfigError(f"model config: rope_freq_factors must be {self.head_dim // 2} finite positive numbers "
                              f"(one per RoPE frequency), got {len(factors)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"model config: arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.hres not in ("identity", "diagonal", "sinkhorn"):
            raise ConfigError(f"model config: hres must be identity, diagonal or sinkhorn, got {self.hres!r}")
        if min(self.n_begin, self.n_middle, self.n_end) < 0 or self.n_loops < 1 or self.n_streams < 1:
            raise ConfigError("model config: layer counts must be >= 0, n_loops and n_streams >= 1")
        if self.is_looped and self.n_middle == 0:
            raise ConfigError(f"model config: a {self.arch} model needs n_middle >= 1 layers to loop")
        if self.parametrization not in ("sp", "mup"):
            raise ConfigError(f"model config: parametrization must be sp or mup, got {self.parametrization!r}")
        if self.parametrization == "mup" and (self.arch != "transformer" or self.tie_embeddings):
            raise ConfigError("model config: mup is implemented for the plain Transformer with an untied head")
        for name in ("attn_head_dim", "window"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ConfigError(f"model config: {name} must be a positive integer or None, got {v!r}")
        for name in ("mem_slots", "mem_dim", "mem_read_heads", "mem_write_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {v!r}")
        if self.memory and self.arch != "transformer":
            raise ConfigError(f"model config: the phasor memory is implemented for arch='transformer', not {self.arch!r}")
        if self.memory and self.mem_slots < 2:
            raise ConfigError("model config: the phasor memory needs mem_slots >= 2 (the routing tree branches N ways)")
        if self.mlp_act not in ("silu", "gelu_tanh"):
            raise ConfigError(f"model config: mlp_act must be silu or gelu_tanh, got {self.mlp_act!r}")
        v = self.global_every
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0 or self.window is None):
            raise ConfigError(f"model config: global_every must be a positive integer with a window, got {v!r}")
        if self.rope_local_base is not None and (self.window is None or not self.rope_local_base > 1):
            raise ConfigError(f"model config: rope_local_base must be > 1 and needs a window, got {self.rope_local_base!r}")
        gemma = self.embed_scale or self.post_norms or self.global_every is not None or self.rope_local_base is not None
        if gemma and (self.arch != "transformer" or self.memory):
            raise ConfigError("model config: the Gemma 3 switches (embed_scale, post_norms, global_every, "
                              "rope_local_base) are implemented for the plain arch='transformer' without memory")
        if self.arch == "looped" and self.n_streams != 1:
            raise ConfigError("model config: a plain looped model has one stream; use arch='hyperloop' for n_streams > 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"model config: unknown keys {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


ARCHS = ("transformer", "looped", "hyperloop", "mhc")

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny models that train on 2 CPU cores in minutes (vocabulary set by the tokenizer at train time).
    "nano": dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=192, max_seq_len=512),
    "tiny": dict(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=384, max_seq_len=1024),
    "small": dict(d_model=192, n_layers=6, n_heads=6, n_kv_heads=2, d_ff=512, max_seq_len=1024),
    # The shape of SmolLM2-135M (for imported checkpoints).
    "smollm2-135m": dict(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536,
                         rope_base=100000.0, max_seq_len=8192, tie_embeddings=True),
}


def _hyperloop_family(scale: str, d_model: int, begin: int, middle: int, end: int, vocab: int, d_ff: int,
                      n_heads: int, max_seq_len: int, **extra: Any) -> dict[str, dict[str, Any]]:
    """The four architectures of the Hyperloop paper at one scale: depth-matched Transformer and mHC, and the
    b→m×3→e Looped and Hyperloop models (n = 4 streams)."""
    common = dict(vocab_size=vocab, d_model=d_model, n_heads=n_heads, d_ff=d_ff, max_seq_len=max_seq_len, **extra)
    depth = begin + 3 * middle + end
    layout = dict(n_begin=begin, n_middle=middle, n_end=end, n_loops=3)
    return {
        f"transformer-{scale}": dict(common, n_layers=depth),
        f"mhc-{scale}": dict(common, arch="mhc", n_layers=depth, n_streams=4, hres="sinkhorn"),
        f"looped-{scale}": dict(common, arch="looped", **layout),
        f"hyperloop-{scale}": dict(common, arch="hyperloop", n_streams=4, hres="diagonal", loop_embedding=True, **layout),
    }


# Paper Table 1: vocab 32,000, d_ff = 2.75·C, 16 heads, untied head.
for _scale, _c, _b, _m, _e in (("paper-small", 1024, 2, 4, 2), ("paper-mid", 2048, 3, 4, 3), ("paper-large", 2048, 4, 10, 4)):
    PRESETS.update(_hyperloop_family(_scale, _c, _b, _m, _e, vocab=32000, d_ff=int(2.75 * _c), n_heads=16,
                                     max_seq_len=2048, tie_embeddings=False))
# CPU scale: C=128, 1→2×3→1 (unrolled depth 8), 4 heads; vocabulary set by the tokenizer at train time.
PRESETS.update(_hyperloop_family("tiny", 128, 1, 2, 1, vocab=259, d_ff=352, n_heads=4, max_seq_len=1024,
                                 tie_embeddings=False))


# PMNet (arXiv 2605.13370): the authors' released configuration (byte vocabulary 384, 118,970,368 parameters), and a
# CPU-scale model for the synthetic retrieval tasks (vocabulary 48 of mechlab.data.retrieval; receptive field
# 4 × 15 = 60 positions back) with its memory-free twin.
PRESETS.update({
    "pmnet-paper": dict(vocab_size=384, d_model=512, n_layers=12, n_heads=12, attn_head_dim=64, d_ff=1024,
                        norm_eps=1e-6, rope_base=1e6, max_seq_len=2048, tie_embeddings=True, window=128, qk_norm=True,
                        memory=True, mem_slots=4, mem_dim=512, mem_read_heads=4, mem_write_every=3),
    "pmnet-tiny": dict(vocab_size=48, d_model=128, n_layers=4, n_heads=4, d_ff=256, max_seq_len=2048, window=16,
                       qk_norm=True, memory=True, mem_slots=4, mem_dim=64, mem_read_heads=2, mem_write_every=1),
    "window-tiny": dict(vocab_size=48, d_model=128, n_layers=4, n_heads=4, d_ff=256, max_seq_len=2048, window=16,
                        qk_norm=True),
})


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, with optional field overrides (e.g. ``vocab_size``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model config: unknown keys {unknown}")
    return ModelConfig(**{**PRESETS[name], **overrides})
