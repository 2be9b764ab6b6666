"""Synthetic long-range retrieval tasks generated on the fly (no download), for the one trainer (arXiv 2605.13370).

Vocabulary (48 symbols, :data:`VOCAB_SIZE`): markers KEY 0, VAL 1, QUERY 2, COPY 3, DELIM 4; 16 keys 5–20; 16
values (also the copy payload alphabet) 21–36; 11 filler symbols 37–47, disjoint from keys and values.

- ``needle`` (single-needle retrieval): ``fillers · KEY k VAL v · G fillers · QUERY k → v``. One target per row, the
  value v predicted at the final k; v lies G + 2 positions before that prediction. Chance = 1/16. With ``probes`` P
  > 1 (training rows only: a denser signal, the same task), up to P − 1 earlier ``QUERY k`` pairs replace fillers
  inside the gap, at uniformly drawn non-overlapping offsets g_i < G, each with the target v at its k; the answer
  is never written into the row, so every probe reads the one needle, from g_i + 2 positions back.
- ``copy`` (multi-symbol copy-paste): ``fillers · p_1 … p_P DELIM · G fillers · COPY → p_1 … p_P``: P targets, the
  payload predicted after COPY with the true prefix fed (teacher forcing); a row is right only if all P are
  (exact match). Chance = 16^(−P).

Rows are ``seq_len`` + 1 symbols (``max(seq_len + 1, core length)`` when G is larger than training allows), filled in
front with random fillers; inputs x are the first L symbols, targets y the last L, with −100 (ignored by the loss)
everywhere but the answer positions, so the loss and the accuracy count only answers. Row i of optimiser step s of
seed σ is drawn from ``numpy.random.default_rng([σ, s])``: data order depends on (seed, step) only, as the trainer
requires of a :class:`~mechlab.train.trainer.Task`.

As a data source of ``mechlab train`` (``--data retrieval:needle`` or ``retrieval:copy``, options after commas, e.g.
``retrieval:copy,payload=4,max_gap=80``; see :func:`parse_source`) the run is the one trainer's: rows of the run's
seq_len, normal checkpoints with the one-character-per-symbol :class:`RetrievalTokenizer`, loadable by ``mechlab
eval``/``generate`` and scored per gap by ``mechlab exact-match``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from mechlab.errors import ConfigError, DataError

KEY, VAL, QUERY, COPY, DELIM = 0, 1, 2, 3, 4
KEYS = np.arange(5, 21)
VALUES = np.arange(21, 37)
FILLERS = np.arange(37, 48)
VOCAB_SIZE = 48
IGNORE = -100
# One printable character per symbol (RetrievalTokenizer): markers, keys a–p, values A–P, fillers 0–9 and '.'.
SYMBOLS = "#=?>|" + "abcdefghijklmnop" + "ABCDEFGHIJKLMNOP" + "0123456789."
SOURCE_PREFIX = "retrieval:"
SOURCE_OPTIONS = ("min_gap", "max_gap", "far_gap", "far_fraction", "payload", "probes")


class RetrievalTokenizer:
    """The tokenizer of the synthetic tasks: symbol i is the character ``SYMBOLS[i]`` (KEY '#', VAL '=', QUERY '?',
    COPY '>', DELIM '|', keys a–p, values A–P, fillers 0–9 and '.'); whitespace in a text is skipped. No BOS/EOS
    (ids −1). ``encode`` raises DataError naming the first character that is not a symbol."""

    vocab_size = VOCAB_SIZE
    bos_id = -1
    eos_id = -1
    add_bos = False

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = []
        for ch in text:
            if ch.isspace():
                continue
            i = SYMBOLS.find(ch)
            if i < 0:
                raise DataError(f"retrieval tokenizer: {ch!r} is not a symbol (symbols: {SYMBOLS})")
            ids.append(i)
        return ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.uint16)

    def decode(self, ids) -> str:
        return "".join(SYMBOLS[i] for i in ids if 0 <= i < VOCAB_SIZE)

    def token_byte_lengths(self) -> np.ndarray:
        return np.ones(VOCAB_SIZE, dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"mechlab_tokenizer": "retrieval", "symbols": SYMBOLS})

    def __repr__(self) -> str:
        return f"RetrievalTokenizer(vocab_size={VOCAB_SIZE})"


@dataclass(frozen=True)
class RetrievalTask:
    """A synthetic task: ``kind`` "needle" or "copy"; training rows of ``seq_len`` tokens with gaps G drawn
    uniformly from [min_gap, max_gap], except that a fraction ``far_fraction`` of the rows (on average) draws G
    uniformly from [far_gap, max_gap] (a gap distribution in which most rows need a memory when far_gap lies beyond
    the receptive field); ``payload`` symbols to copy (copy only); ``probes`` queries of the needle per training row
    (needle only; the last at gap G, the others inside the gap; exact-match scoring always uses one query per row).
    Raises ConfigError for a setting out of range."""

    kind: str = "needle"
    seq_len: int = 128
    min_gap: int = 0
    max_gap: int = 96
    payload: int = 8
    far_gap: int = 0
    far_fraction: float = 0.0
    probes: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("needle", "copy"):
            raise ConfigError(f"retrieval task: kind must be 'needle' or 'copy', got {self.kind!r}")
        for name in ("seq_len", "payload"):
            _check_int(f"retrieval task: {name}", getattr(self, name))
        _check_probes("retrieval task", self.kind, self.probes)
        if not 0 <= self.min_gap <= self.max_gap:
            raise ConfigError(f"retrieval task: need 0 <= min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")
        if not 0 <= self.far_gap <= self.max_gap or (self.far_fraction > 0 and self.far_gap < self.min_gap):
            # min_gap only binds far rows that are drawn: the default far_gap 0 stays valid beside a min_gap
            raise ConfigError(f"retrieval task: need min_gap <= far_gap <= max_gap, got {self.far_gap}")
        if isinstance(self.far_fraction, bool) or not 0.0 <= self.far_fraction <= 1.0:
            raise ConfigError(f"retrieval task: far_fraction must be in [0, 1], got {self.far_fraction!r}")
        if self.probes - 1 > self.max_gap // 2:
            raise ConfigError(f"retrieval task: probes={self.probes}, but the longest gap ({self.max_gap}) holds "
                              f"{self.max_gap // 2} earlier queries, so at most probes={self.max_gap // 2 + 1}")
        if self.core_length(self.max_gap) > self.seq_len + 1:
            n = self.core_length(self.max_gap)
            raise ConfigError(f"retrieval task: a gap of {self.max_gap} needs {n} symbols, a row of seq_len {n - 1} "
                              f"(inputs and their next-symbol targets); raise seq_len to >= {n - 1} or lower max_gap")

    def test_length(self, gap: int) -> int:
        """Tokens of a test row of gap G (:func:`exact_match`): the training rows' seq_len, or longer where G needs."""
        return max(self.seq_len, self.core_length(gap) - 1)

    def core_length(self, gap: int) -> int:
        """Symbols of a row without its front filler: 7 + G (needle), 2P + 2 + G (copy)."""
        return _core_length(self.kind, self.payload, gap)

    def distance(self, gap: int) -> int:
        """Positions between the earliest symbol an answer needs and the position that predicts it: G + 2 (needle:
        v to the final k), G + P + 1 (copy: p_1 to COPY). A gap is beyond an attention stack's receptive field rf
        when distance > rf."""
        return gap + 2 if self.kind == "needle" else gap + self.payload + 1

    def first_gap_beyond(self, rf: int) -> int:
        """The shortest gap G whose answer lies beyond a receptive field of ``rf`` positions (distance(G) > rf)."""
        return max(0, rf + 1 - self.distance(0))

    def scorable(self, model_cfg, gap: int) -> bool:
        """Whether a model of ``model_cfg`` can score test rows of gap G (:meth:`test_length`): within its
        max_seq_len, or any length with sliding-window attention only (no length limit). Streaming in chunks does
        not lift a full-attention model's limit: its cache holds max_seq_len positions."""
        return self.test_length(gap) <= model_cfg.max_seq_len or bool(getattr(model_cfg, "all_local", False))

    @property
    def answers(self) -> int:
        """Target positions per row (1 for the needle, P for copy)."""
        return 1 if self.kind == "needle" else self.payload

    @property
    def chance(self) -> float:
        """Exact-match accuracy of uniform guessing among the 16 values."""
        return 1 / len(VALUES) ** self.answers

    def row(self, rng: np.random.Generator, gap: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one row of gap G, ``length`` − 1 symbols each (``length`` >= core_length(gap)): inputs x and
        targets y (IGNORE but at the answer positions)."""
        if self.kind == "needle":
            k, v = rng.choice(KEYS), rng.choice(VALUES)
            core = [KEY, k, VAL, v, *rng.choice(FILLERS, gap), QUERY, k, v]
        else:
            p = rng.choice(VALUES, self.payload)
            core = [*p, DELIM, *rng.choice(FILLERS, gap), COPY, *p]
        r = np.concatenate([rng.choice(FILLERS, length - len(core)), np.asarray(core)]).astype(np.int64)
        y = np.full(length - 1, IGNORE, dtype=np.int64)
        y[-self.answers :] = r[-self.answers :]
        return r[:-1], y

    @staticmethod
    def add_probes(x: np.ndarray, y: np.ndarray, gap: int, probes: int, rng: np.random.Generator) -> None:
        """Write up to probes − 1 earlier queries of a needle row's needle into its gap, in place: m = min(probes − 1,
        ⌊G/2⌋) non-overlapping (QUERY, k) pairs at offsets o_i = a_i + i after v, with a_0 < … < a_{m−1} drawn
        without replacement from [0, G − m) (every placement of m pairs in the G gap symbols equally likely; the last
        k at offset <= G − 1), each with target v at its k. Raises DataError when (x, y) is not a needle row of gap G
        without probes (… KEY k VAL v · G fillers · QUERY k, target v at the end only)."""
        _check_int("add_probes: probes", probes)
        k, v, start = x[-1], y[-1], len(x) - 2 - gap  # the gap's first symbol: x ends with · G symbols · QUERY k
        if not (0 <= gap and start >= 4 and x[start - 4] == KEY and x[start - 3] == k and x[start - 2] == VAL
                and x[start - 1] == v and x[-2] == QUERY and np.all(np.isin(x[start:-2], FILLERS))
                and np.all(y[:-1] == IGNORE)):
            raise DataError(f"add_probes: the row is not a needle row of gap {gap} without probes "
                            "(… KEY k VAL v · G fillers · QUERY k)")
        m = min(probes - 1, gap // 2)
        if m <= 0:
            return
        for i, a in enumerate(np.sort(rng.choice(gap - m, size=m, replace=False))):
            at = start + int(a) + i
            x[at], x[at + 1] = QUERY, k
            y[at + 1] = v

    def rows(self, rng: np.random.Generator, gaps: np.ndarray, probes: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) (len(gaps), L) int64 for the given gaps, ``probes`` queries per needle row (:meth:`add_probes`,
        placed from a stream spawned off ``rng``, so the rows are those of one probe with probes written over
        fillers); L = max(seq_len, longest core − 1)."""
        _check_probes("retrieval rows", self.kind, probes)
        if len(gaps) == 0:
            raise ConfigError("retrieval rows: give at least one gap")
        length = max(self.seq_len + 1, max(self.core_length(int(g)) for g in gaps))
        xs, ys = zip(*(self.row(rng, int(g), length) for g in gaps))
        x, y = np.stack(xs), np.stack(ys)
        if probes > 1:
            placement = rng.spawn(1)[0]
            for i, g in enumerate(gaps):
                self.add_probes(x[i], y[i], int(g), probes, placement)
        return torch.from_numpy(x), torch.from_numpy(y)

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of optimiser step ``step``: gaps uniform on [min_gap, max_gap] (a fraction
        ``far_fraction`` of rows on [far_gap, max_gap]), rows of seq_len, ``probes`` queries per needle row."""
        _check_int("retrieval batch: batch_size", batch_size)
        rng = np.random.default_rng([seed, step])
        gaps = rng.integers(self.min_gap, self.max_gap + 1, size=batch_size)
        if self.far_fraction > 0:
            far = rng.random(batch_size) < self.far_fraction
            gaps = np.where(far, rng.integers(self.far_gap, self.max_gap + 1, size=batch_size), gaps)
        return self.rows(rng, gaps, self.probes)


def is_source(data: str) -> bool:
    """Whether a training data name is a synthetic-task source (``retrieval:...``)."""
    return isinstance(data, str) and data.startswith(SOURCE_PREFIX)


def parse_source(data: str, seq_len: int) -> RetrievalTask:
    """The :class:`RetrievalTask` a data source names: ``retrieval:KIND[,option=value,...]`` with KIND needle or copy
    and options among min_gap, max_gap, far_gap, far_fraction, payload, probes. The row length is the run's
    ``seq_len`` (one source of truth: a seq_len option is refused); max_gap defaults to the longest gap a row of
    seq_len holds.
    Raises ConfigError naming the part of the name it cannot use."""
    if not is_source(data):
        raise ConfigError(f"not a retrieval data source: {data!r} (expected 'retrieval:needle' or 'retrieval:copy')")
    kind, *parts = data[len(SOURCE_PREFIX):].split(",")
    if kind not in ("needle", "copy"):
        raise ConfigError(f"data source {data!r}: the task must be 'needle' or 'copy', got {kind!r}")
    opts: dict = {}
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if name == "seq_len":
            raise ConfigError(f"data source {data!r}: the row length is the run's seq_len (--seq-len); "
                              "do not give seq_len in the source")
        if not eq or name not in SOURCE_OPTIONS:
            raise ConfigError(f"data source {data!r}: {part!r} is not option=value with an option among "
                              f"{', '.join(SOURCE_OPTIONS)}")
        try:
            v = float(value) if name == "far_fraction" else int(value)
        except ValueError:
            raise ConfigError(f"data source {data!r}: {name} must be "
                              f"{'a number' if name == 'far_fraction' else 'an integer'}, got {value!r}") from None
        if name in opts:
            raise ConfigError(f"data source {data!r}: {name} is given twice")
        if name == "far_fraction" and not math.isfinite(v):
            raise ConfigError(f"data source {data!r}: far_fraction must be in [0, 1], got {value!r}")
        opts[name] = v
    if kind == "needle" and "payload" in opts:
        raise ConfigError(f"data source {data!r}: payload applies to the copy task, not 'needle'")
    if "max_gap" not in opts:
        longest = longest_gap(kind, seq_len, opts.get("payload", RetrievalTask.payload))
        if longest < 0:
            raise ConfigError(f"data source {data!r}: rows of seq_len {seq_len} cannot hold a {kind} task; "
                              "raise --seq-len")
        opts["max_gap"] = longest
    return RetrievalTask(kind, seq_len=seq_len, **opts)


def source_task(cfg, eval_gaps: tuple[int, ...] = (8, 64, 128)):
    """The :class:`~mechlab.train.trainer.Task` of a training run whose ``cfg.data`` is a retrieval source: the model
    of preset ``cfg.model`` (with ``cfg.model_overrides``; vocabulary the task's 48 symbols, see
    :func:`mechlab.train.trainer.run_model_config`), rows of ``cfg.seq_len``, exact-match logged at ``eval_gaps`` on
    ``cfg.eval_windows`` rows per gap, and the :class:`RetrievalTokenizer`, so the trainer writes normal checkpoints."""
    from mechlab.train.trainer import run_model_config

    task = parse_source(cfg.data, cfg.seq_len)
    mcfg = run_model_config(cfg, VOCAB_SIZE)
    fits = [g for g in eval_gaps if task.scorable(mcfg, g)]
    if len(fits) < len(eval_gaps):
        longest = task.test_length(max(eval_gaps))
        logging.getLogger("mechlab").warning(
            "exact match is logged at G = %s only: rows of G = %s exceed the model's max_seq_len %d (a model "
            "override max_seq_len=%d, e.g. --set max_seq_len=%d, scores them too)", fits or "none",
            [g for g in eval_gaps if g not in fits], mcfg.max_seq_len, longest, longest)
    t = training_task(mcfg, task, eval_gaps=tuple(fits), eval_rows=cfg.eval_windows, eval_seed=cfg.seed)
    t.tokenizer = RetrievalTokenizer()
    return t


def _core_length(kind: str, payload: int, gap: int) -> int:
    """Symbols of a row of ``kind`` without its front filler: 7 + G (needle), 2P + 2 + G (copy)."""
    return 7 + gap if kind == "needle" else 2 * payload + 2 + gap


def longest_gap(kind: str, seq_len: int, payload: int = RetrievalTask.payload) -> int:
    """The longest gap a row of ``seq_len`` tokens (seq_len + 1 symbols: inputs and their targets) holds; negative
    where the row cannot hold the task at all."""
    return seq_len + 1 - _core_length(kind, payload, 0)


def _check_int(name: str, v, minimum: int = 1) -> None:
    """ConfigError naming ``name`` unless ``v`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {kind}, got {v!r}")


def _check_probes(where: str, kind: str, probes) -> None:
    """ConfigError unless ``probes`` is a positive integer, and 1 for a task other than the needle."""
    _check_int(f"{where}: probes", probes)
    if probes > 1 and kind != "needle":
        raise ConfigError(f"{where}: probes apply to the needle task, not {kind!r}")


@torch.no_grad()
def exact_match(model: torch.nn.Module, task: RetrievalTask, gap: int, n_rows: int, seed: int,
                batch_size: int = 32, chunk: int | None = None) -> np.ndarray:
    """Per-row exact-match (bool array of n_rows) of ``model`` on fresh rows of gap G (seeded by (seed, G), so every
    model is scored on the same rows): all answer positions predicted right by argmax. ``chunk`` streams each row
    through the model's cache (``Transformer.forward_chunked``) instead of one full pass. Raises ConfigError naming
    the argument for a gap < 0, n_rows/batch_size/chunk < 1, a model with fewer than 48 symbols, or rows longer
    than a model with full-attention layers takes, chunked or not (:meth:`RetrievalTask.scorable`)."""
    _check_int("exact_match: gap", gap, 0)
    _check_int("exact_match: n_rows", n_rows, 1)
    _check_int("exact_match: batch_size", batch_size, 1)
    _check_int("exact_match: seed", seed, 0)
    if chunk is not None:
        _check_int("exact_match: chunk", chunk, 1)
    if not isinstance(task, RetrievalTask):
        raise ConfigError(f"exact_match: task must be a RetrievalTask, got {type(task).__name__}")
    mcfg = getattr(model, "config", None)
    if mcfg is not None:
        if mcfg.vocab_size < VOCAB_SIZE:
            raise ConfigError(f"exact_match: the tasks use {VOCAB_SIZE} symbols; the model's vocab_size is "
                              f"{mcfg.vocab_size}")
        if not task.scorable(mcfg, gap):
            length = task.test_length(gap)
            raise ConfigError(f"exact_match: gap {gap} makes rows of {length} tokens, beyond the model's max_seq_len "
                              f"{mcfg.max_seq_len} (and it has full-attention layers, so it cannot stream)")
    rng = np.random.default_rng([seed, 1_000_003, gap])
    x, y = task.rows(rng, np.full(n_rows, gap))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits = []
    for i in range(0, n_rows, batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits = model.forward_chunked(xb, chunk) if chunk else model(xb)[0]
        ans = yb[:, -task.answers :]
        hits.append((logits[:, -task.answers :].argmax(-1) == ans).all(-1).cpu())
    model.train(was_training)
    return torch.cat(hits).numpy()


def training_task(model_cfg, task: RetrievalTask, eval_gaps: tuple[int, ...] = (), eval_rows: int = 64,
                  eval_seed: int = 0):
    """A :class:`~mechlab.train.trainer.Task` for the one trainer: builds ``build_model(model_cfg)``, draws
    :meth:`RetrievalTask.batch` and, at each evaluation, logs ``acc_G{g}`` = exact-match accuracy at every gap of
    ``eval_gaps`` on ``eval_rows`` rows. The Task declares the task's seq_len: the trainer refuses a run whose
    ``TrainConfig.seq_len`` differs (the recorded config and the rows trained on are one)."""
    from mechlab.models import build_model
    from mechlab.train.trainer import Task

    if model_cfg.vocab_size < VOCAB_SIZE:
        raise ConfigError(f"retrieval tasks use {VOCAB_SIZE} symbols; the model's vocab_size is {model_cfg.vocab_size}")
    if model_cfg.max_seq_len < task.seq_len:
        raise ConfigError(f"retrieval task: rows of {task.seq_len} tokens exceed the model's max_seq_len "
                          f"{model_cfg.max_seq_len}")

    def evaluate(model) -> dict[str, float]:
        return {f"acc_G{g}": float(exact_match(model, task, g, eval_rows, eval_seed).mean()) for g in eval_gaps}

    return Task(build_model=lambda: build_model(model_cfg), batch=task.batch, evaluate=evaluate if eval_gaps else None,
                seq_len=task.seq_len)
