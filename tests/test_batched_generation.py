"""Ragged (left-padded) batched generation (Transformer.generate with ``pad``; generation.generate_batch): every row
gets what it gets alone. In float64 the batched and single-row computations differ only by rounding (~1e-16
relative per operation), so their logits agree to 1e-9 and greedy choices are the same."""

import json

import pytest
import torch

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.models.transformer import KVCache

TINY = dict(vocab_size=97, d_model=48, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=128)


def model64(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset("tiny", **{**TINY, **kw})).double().eval()


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    return (torch.tensor([[0] * (width - len(r)) + r for r in rows]),
            torch.tensor([width - len(r) for r in rows]))


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [20, 21, 22, 23]]


@torch.no_grad()
def test_ragged_prefill_logits_equal_each_row_alone():
    m = model64()
    idx, pad = left_pad(PROMPTS)
    logits, _ = m(idx, cache=KVCache(3, 16, pad=pad))
    for b, row in enumerate(PROMPTS):
        alone, _ = m(torch.tensor([row]))
        torch.testing.assert_close(logits[b, pad[b]:], alone[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk", [None, 3])
def test_ragged_greedy_generation_equals_each_row_alone(chunk):
    m = model64()
    idx, pad = left_pad(PROMPTS)
    limits = [6, 3, 5]
    out = m.generate(idx, limits, temperature=0.0, pad=pad, prefill_chunk=chunk)
    for b, row in enumerate(PROMPTS):
        alone = m.generate(torch.tensor([row]), limits[b], temperature=0.0)
        assert out[b, idx.shape[1]: idx.shape[1] + limits[b]].tolist() == alone[0, len(row):].tolist()


def test_rows_stop_at_their_own_end_token():
    m = model64()
    idx, pad = left_pad(PROMPTS)
    free = m.generate(idx, 8, temperature=0.0, pad=pad)
    first = free[0, idx.shape[1]].item()  # row 0 ends at once; the others go on until every row is done
    out = m.generate(idx, 8, temperature=0.0, pad=pad, eos_id=first)
    assert out.shape[1] <= free.shape[1] and out[0, idx.shape[1]].item() == first
    for b in (1, 2):
        gen = free[b, idx.shape[1]:].tolist()
        n = gen.index(first) + 1 if first in gen else len(gen)
        assert out[b, idx.shape[1]: idx.shape[1] + n].tolist() == gen[: out.shape[1] - idx.shape[1]][:n]


def test_ragged_batches_are_refused_where_they_cannot_be_exact():
    idx, pad = left_pad(PROMPTS)
    with pytest.raises(ConfigError, match="ragged"):
        model64(window=4).generate(idx, 2, pad=pad)
    with pytest.raises(ConfigError, match="ragged"):
        model64().generate(idx, 2, pad=pad, use_cache=False)


# ---- relays in lockstep (mechlab.delegate.relay.run_relays) --------------------------------------------------

def test_lockstep_relays_equal_sequential_relays_for_an_agent_without_batches(tmp_path):
    """The oracle answers each step from the step alone, so the relays in lockstep must write the same traces."""
    from mechlab.delegate import OracleAgent, bundled_environments, load_environment, run_relay, run_relays

    envs = [load_environment(p) for p in bundled_environments()[:3]]
    alone = [run_relay(e, OracleAgent(), 2, seed=5, trace=tmp_path / f"a{i}.jsonl") for i, e in enumerate(envs)]
    together = run_relays([(e, tmp_path / f"b{i}.jsonl") for i, e in enumerate(envs)], OracleAgent(), 2, seed=5)
    assert [r.rs for r in together] == [r.rs for r in alone] == [[1.0, 1.0]] * 3
    for i in range(3):
        strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "seconds"}  # noqa: E731
                           for x in p.read_text().splitlines()]
        assert strip(tmp_path / f"a{i}.jsonl") == strip(tmp_path / f"b{i}.jsonl")


def test_local_model_batches_give_each_relay_its_own_replies(tmp_path):
    """A tiny imported chat model (float64, so that batched and single decoding cannot flip a greedy choice):
    the relays run in lockstep through respond_batch reply exactly as each relay run alone through respond."""
    from gguf_files import write_gguf
    from mechlab.delegate import bundled_environments, load_environment, run_relay, run_relays
    from mechlab.delegate.backends import LocalModelAgent
    from mechlab.pretrained import import_checkpoint

    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    write_gguf(tmp_path / "m.gguf", fields={"tokenizer.chat_template": template, "llama.context_length": 4096})
    ck = import_checkpoint("gguf", tmp_path / "m.gguf", tmp_path / "ck")
    agent = LocalModelAgent(str(ck), max_new_tokens=24)
    agent.ck.model.double()
    envs = [load_environment(p) for p in bundled_environments()[:3]]
    alone = [run_relay(e, agent, 1, trace=tmp_path / f"a{i}.jsonl") for i, e in enumerate(envs)]
    together = run_relays([(e, tmp_path / f"b{i}.jsonl") for i, e in enumerate(envs)], agent, 1)
    for i in range(len(envs)):
        a = [json.loads(x) for x in (tmp_path / f"a{i}.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (tmp_path / f"b{i}.jsonl").read_text().splitlines()]
        assert [s["response"] for s in a] == [s["response"] for s in b]
        assert [s["completion_tokens"] for s in a] == [s["completion_tokens"] for s in b] != [0, 0]
    assert [r.rs for r in together] == [r.rs for r in alone]


def test_generate_batch_refuses_bad_input(tmp_path):
    from types import SimpleNamespace

    from mechlab.generation import generate_batch

    m = model64()
    ck = SimpleNamespace(model=m, config=m.config, meta={}, tokenizer=SimpleNamespace(
        encode=lambda text, add_bos=False: [ord(c) % 97 for c in text], decode=lambda ids: "", add_bos=False))
    for prompts, budgets, kw, message in ((["a", "b"], [1], {}, "one token budget"), ("ab", [1, 1], {}, "list"),
                                          (["a"], [-1], {}, "whole numbers"), (["a"], [2.5], {}, "whole numbers"),
                                          (["a"], [True], {}, "whole numbers"),
                                          (["a"], [1], {"temperature": float("nan")}, "temperature"),
                                          (["a"], [1], {"prefill_chunk": 0}, "prefill_chunk"),
                                          ([""], [1], {}, "non-empty"), (["a" * 100], [100], {}, "context")):
        with pytest.raises(ConfigError, match=message):
            generate_batch(ck, prompts, budgets, **kw)
    assert generate_batch(ck, [], []) == []


def test_a_ragged_batch_is_limited_by_each_row_not_by_the_padded_width():
    m = model64()  # max_seq_len 128: a 120-token row and a 3-token row with 100 new tokens fit, each on its own
    idx, pad = left_pad([list(range(1, 91)) + list(range(1, 31)), [5, 6, 7]])
    out = m.generate(idx, [1, 100], temperature=0.0, pad=pad)
    alone = m.generate(torch.tensor([[5, 6, 7]]), 100, temperature=0.0)
    assert out[1, idx.shape[1]:].tolist() == alone[0, 3:].tolist()
