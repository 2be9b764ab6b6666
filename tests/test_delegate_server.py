"""The relay against real model servers: the per-step reply budget (mechlab.delegate.relay.reply_budget) that both
backends apply, and llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) started, relayed through the
HTTP backend and stopped, serving a tiny GGUF written by the test."""

from __future__ import annotations

import json

import pytest

from gguf_files import write_gguf
from mechlab.delegate import bundled_environments, load_environment, run_relay, run_relays
from mechlab.delegate.backends import BackendError, OpenAIChatAgent, llama_server
from mechlab.delegate.relay import Step, reply_budget
from mechlab.delegate.replies import format_files
from mechlab.errors import ConfigError
from test_delegate import ScriptedServer


def chars(text: str) -> int:
    return len(text)


def step_with(target: dict | None) -> Step:
    env = load_environment(bundled_environments("csv")[0])
    return Step(env.tasks[0], "backward", dict(env.seed), sorted(env.seed), None, target)


def test_reply_budget_is_twice_the_target_plus_a_margin_under_the_cap():
    env = load_environment(bundled_environments("csv")[0])
    size = len(format_files(env.seed))
    assert reply_budget(step_with(env.seed), chars, 2.0, 10**6) == 2 * size + 256
    assert reply_budget(step_with(env.seed), chars, 1.5, 10**6) == -(-3 * size // 2) + 256
    assert reply_budget(step_with(env.seed), chars, 2.0, 300) == 300  # the cap wins
    assert reply_budget(step_with(None), chars, 2.0, 10**6) == 2 * size + 256  # no target written out: the files
    assert reply_budget(None, chars, 2.0, 300) == 300
    assert reply_budget(step_with(env.seed), chars, None, 300) == 300  # no factor: the cap
    with pytest.raises(ValueError, match="cuts complete answers"):
        reply_budget(step_with(env.seed), chars, 0.5, 300)


def test_http_backend_sends_each_steps_budget_as_max_tokens():
    env = load_environment(bundled_environments("csv")[0])
    server = ScriptedServer([("ok", "no files"), ("ok", "no files")])
    try:
        agent = OpenAIChatAgent("m", base_url=server.url, budget_factor=2.0, count_tokens=chars, max_tokens=10**6)
        run_relay(env, agent, round_trips=1)
    finally:
        server.close()
    sent = [body["max_tokens"] for _, body, _ in server.requests]
    # the backward step's target is the seed; the forward step's, the drawn task's forward state
    assert sent[1] == 2 * len(format_files(env.seed)) + 256
    assert sent[0] == 2 * len(format_files(env.seed)) + 256  # the forward state is not written out: the seed's size
    with pytest.raises(ConfigError, match="token counter"):
        OpenAIChatAgent("m", base_url=server.url, budget_factor=2.0)


def test_llama_cpp_server_end_to_end(tmp_path):
    """A real llama.cpp server on 127.0.0.1 serving a tiny random GGUF: the relay reaches it over HTTP, every step is
    answered (no transport error), each reply stays within its budget, and the server is stopped afterwards."""
    pytest.importorskip("llama_cpp.server.app")  # CI installs llama-cpp-python[server]; absent elsewhere
    import urllib.request

    gguf = tmp_path / "tiny.gguf"
    write_gguf(gguf)
    env = load_environment(bundled_environments("csv")[0])
    log = tmp_path / "server.log"
    budgets = []

    def count(text: str) -> int:  # a crude token counter: the budget only has to be a bound the server applies
        n = len(text) // 4 + 1
        budgets.append(2 * n + 256)
        return n

    with llama_server(gguf, threads=1, context=4096, log=log) as base:
        agent = OpenAIChatAgent("tiny", base_url=base, timeout=300.0, max_tokens=64, budget_factor=2.0,
                                count_tokens=count)
        r = run_relay(env, agent, round_trips=1, trace=tmp_path / "t.jsonl")
    steps = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert r.failed is None and len(steps) == 2
    for s in steps:
        assert s["error"] is None or s["error"].startswith("missing")  # a random model answers, badly
        assert s["prompt_tokens"] > 0 and 0 <= s["completion_tokens"] <= 64  # min(budget, max_tokens)
    with pytest.raises(OSError):  # stopped
        urllib.request.urlopen(base + "/models", timeout=2)


def test_llama_server_that_cannot_start_is_one_clear_error(tmp_path):
    pytest.importorskip("llama_cpp.server.app")
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(BackendError, match="exited"):
        with llama_server(bad, threads=1, context=512, log=tmp_path / "server.log", timeout=120):
            pass


def fake_result(backend: str, rs_rows: list[list[float]]) -> dict:
    relays = [{"rs": rs, "steps": 2 * len(rs), "errors": 1} for rs in rs_rows]
    return {"backend": backend, "relays": relays, "overall": {"tokens": 1000}, "seconds": 3600.0}


def test_delegate_claim_rule():
    from mechlab.claims.registry import INCONCLUSIVE, REFUTED, SUPPORTED, _delegate_rs

    falling = [[0.9 - 0.05 * i - 0.01 * j for i in range(10)] for j in range(8)]
    rising = [[0.2 + 0.05 * i + 0.01 * j for i in range(10)] for j in range(8)]
    floor = [[0.0] * 10 for _ in range(8)]
    m = _delegate_rs([fake_result("local", falling), fake_result("llama-server", floor)])
    assert m.verdict == SUPPORTED and "at the floor" in m.reason and "135M" in m.reason
    assert any("GPT 5.4" in q for q, _ in m.rows) and any("oracle" in q for q, _ in m.rows)
    assert _delegate_rs([fake_result("local", rising), fake_result("llama-server", rising)]).verdict == REFUTED
    assert _delegate_rs([fake_result("local", floor), fake_result("llama-server", floor)]).verdict == INCONCLUSIVE


def test_agents_and_server_refuse_settings_no_relay_can_use(tmp_path):
    from mechlab.delegate import OracleAgent

    for kw in ({"budget_factor": 0.5, "count_tokens": chars}, {"budget_factor": float("nan"), "count_tokens": chars},
               {"budget_factor": 2.0, "count_tokens": "x"}, {"max_tokens": 0}, {"temperature": -1.0}):
        with pytest.raises(ConfigError):
            OpenAIChatAgent("m", base_url="http://127.0.0.1:9/v1", **kw)
    for threads, context in ((0, 512), (1, 0), (True, 512)):
        with pytest.raises(ConfigError, match="whole number"):
            with llama_server(tmp_path / "x.gguf", threads, context, tmp_path / "log"):
                pass
    env = load_environment(bundled_environments("csv")[0])

    class Short:
        name = "short"

        def respond_batch(self, requests):
            return []

    with pytest.raises(ValueError, match="answered 0 of 2"):
        run_relays([(env, None), (env, None)], Short(), 1)
    with pytest.raises(ValueError, match="same trace file"):
        run_relays([(env, tmp_path / "t.jsonl"), (env, tmp_path / "t.jsonl")], OracleAgent(), 1)


def test_benchmark_refuses_bad_settings_with_exit_2(capsys):
    import sys

    sys.path.insert(0, "benchmarks")
    try:
        import delegate_smollm2
    finally:
        sys.path.remove("benchmarks")
    for argv, message in ((["--budget-factor", "nan"], "finite"), (["--budget-factor", "inf"], "finite"),
                          (["--env", "nope"], "unknown environment"), (["--env", "csv-moons", "csv-moons"], "twice"),
                          (["--env"], "expected at least one"), (["--lockstep", "-1"], "--lockstep"),
                          (["--backend", "llama-server", "--lockstep", "2"], "applies to --backend local")):
        with pytest.raises(SystemExit) as e:
            delegate_smollm2.main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_benchmark_resumes_only_relays_made_with_its_settings(monkeypatch, tmp_path, capsys):
    """--resume keeps a finished relay only when settings.json records the run's own settings for it, runs a
    malformed or differently made trace again, and a stopped run says how to go on (exit 130)."""
    import importlib

    from mechlab.delegate import OracleAgent

    monkeypatch.syspath_prepend("benchmarks")
    common = importlib.import_module("common")
    bench = importlib.import_module("delegate_smollm2")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "plot_results", lambda: tmp_path / "x.png")
    ran = []

    def oracle_run(args, todo, trace, traces, threads):  # the relays through the oracle: no model needed
        ran.append([p.name for p in todo])
        jobs = [(load_environment(p), trace[p.name]) for p in todo]
        return [r.to_dict() for r in run_relays(jobs, OracleAgent(), args.round_trips, not args.no_distractors,
                                                args.seed)]

    monkeypatch.setattr(bench, "run_all", oracle_run)
    argv = ["--env", "csv-moons", "json-exhibition", "--round-trips", "1"]
    bench.main(argv)
    assert ran[-1] == ["csv-moons", "json-exhibition"]
    bench.main([*argv, "--resume"])
    assert ran[-1] == [] and "keeping 2 finished relays" in capsys.readouterr().out
    bench.main([*argv, "--resume", "--max-new-tokens", "64"])  # other settings: both again
    assert ran[-1] == ["csv-moons", "json-exhibition"] and "made with other settings" in capsys.readouterr().out
    traces = tmp_path / "delegate_smollm2-local.quick.traces"
    (traces / "csv-moons-s0.jsonl").write_text('{"a": 1}\n[1]\n')  # the right length, not a relay's trace
    bench.main([*argv, "--resume", "--max-new-tokens", "64"])
    assert ran[-1] == ["csv-moons"]

    def stopped(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_all", stopped)
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 130 and "--resume" in capsys.readouterr().err
