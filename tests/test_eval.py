import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError
from mechlab.eval import evaluate_lm, windows
from mechlab.models import ModelConfig, build_model
from test_model import U32, float64_logits


def token_nll_bound(m, x: torch.Tensor) -> torch.Tensor:
    """Bound (T,) on |evaluate_lm's float32 NLL − log_softmax(float64 of one float32 run)| of each target: the two
    runs' logits (batched or alone) are each within float64_logits' bound, and cross-entropy moves by ≤ 2·max|δ
    logit| (its gradient is softmax − one-hot); float32 cross-entropy itself: a V-term sum of exponentials and a
    log ((V + 2)·u on 1 + |log-sum-exp|) and a difference (u on |logit|)."""
    logits, bound = float64_logits(m, x)
    lse = torch.logsumexp(logits[0], -1)
    return 2 * 2 * bound[0].amax(-1) + (logits.shape[-1] + 3) * U32 * (1 + lse.abs() + logits[0].abs().amax(-1))


def test_window_accounting():
    n = 1000
    w = windows(n, 128, 128)
    assert sum(e - f for _, e, f in w) == n - len(w)  # non-overlapping: every window's first token is unscored
    w = windows(n, 128, 32)
    assert sum(e - f for _, e, f in w) == n - 1  # sliding: every token but the very first
    assert all(b <= f < e and e - b <= 128 for b, e, f in w)
    with pytest.raises(ConfigError):
        windows(n, 128, 0)


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, self.vocab) + self.p, None


def test_uniform_model_scores_log2_vocab_bits_per_token():
    ids = np.random.default_rng(0).integers(0, 64, 500).astype(np.uint16)
    lengths = np.full(64, 2)
    r = evaluate_lm(Uniform(64), TokenStream(ids, lengths), context=100)
    assert r.n_tokens == 495 and r.n_bytes == 990
    # each token's NLL is log 64 up to float32 log-sum-exp of 64 equal terms (the sum exact, the log rounded: u,
    # relative ≤ 2u), summed in float64; exp(mean) turns that into a relative ≤ log(64)·2u, and bits per byte
    # divides by n_bytes·ln 2 (2u more)
    assert math.isclose(r.perplexity, 64, rel_tol=2 * math.log(64) * 2 * U32 + 4 * U32)
    assert math.isclose(r.bits_per_byte, 6 / 2, rel_tol=6 * U32)


@pytest.mark.parametrize("stride", [None, 16])
def test_matches_brute_force_window_by_window(stride):
    torch.manual_seed(0)
    m = build_model(ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=64))
    ids = np.random.default_rng(1).integers(0, 40, 300).astype(np.uint16)
    lengths = np.random.default_rng(2).integers(1, 4, 40)
    r = evaluate_lm(m, TokenStream(ids, lengths), context=48, stride=stride, batch_size=3)
    nll, nb, tol = 0.0, 0, 0.0
    for b, e, f in windows(len(ids), 48, stride or 48):
        x = torch.tensor(ids[b:e], dtype=torch.long)[None]
        with torch.no_grad():
            logp = F.log_softmax(m(x)[0][0].double(), -1)
        per_token = token_nll_bound(m, x)
        for t in range(f, e):
            nll -= float(logp[t - b - 1, ids[t]])
            nb += int(lengths[ids[t]])
            tol += float(per_token[t - b - 1])
    assert abs(r.nll - nll) <= tol and r.n_bytes == nb


def test_by_position_sums_the_full_windows_position_by_position():
    torch.manual_seed(0)
    m = build_model(ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=64))
    ids = np.random.default_rng(1).integers(0, 40, 300).astype(np.uint16)  # 6 full windows of 48, one of 12
    r = evaluate_lm(m, TokenStream(ids, np.ones(40, dtype=np.int64)), context=48, batch_size=4, by_position=True)
    assert r.position_windows == 6 and len(r.position_nll) == 47
    brute, tol = torch.zeros(47, dtype=torch.float64), torch.zeros(47, dtype=torch.float64)
    for b in range(0, 6 * 48, 48):
        x = torch.tensor(ids[b : b + 48], dtype=torch.long)[None]
        with torch.no_grad():
            logp = F.log_softmax(m(x[:, :-1])[0][0].double(), -1)
        brute -= logp.gather(1, x[0, 1:, None]).squeeze(1)
        tol += token_nll_bound(m, x[:, :-1])
    assert ((torch.tensor(r.position_nll, dtype=torch.float64) - brute).abs() <= tol).all()
    assert evaluate_lm(m, TokenStream(ids, np.ones(40, dtype=np.int64)), context=48).position_nll is None
