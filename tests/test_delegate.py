"""DELEGATE relays: environment loading, calibration agents (the oracle scores 1.0; the noisy agent falls as
predicted), parsing, and bad answers as error steps."""

import json
import re
import shutil
import statistics

import pytest

from mechlab.delegate import (
    DOMAINS,
    NoisyAgent,
    OracleAgent,
    Reply,
    bundled_environments,
    load_environment,
    parse_files,
    predicted_noisy_rs,
    report,
    run,
    run_relay,
)
from mechlab.errors import ConfigError


def test_every_bundled_environment_loads_with_five_edit_pairs_and_the_oracle_scores_one():
    envs = bundled_environments()
    assert {json.loads((p / "environment.json").read_text())["domain"] for p in envs} == set(DOMAINS)
    for path in envs:
        env = load_environment(path)
        assert len(env.tasks) >= 5 and env.distractors
        r = run_relay(env, OracleAgent(), round_trips=2 * len(env.tasks))  # two full cycles of every task
        assert r.rs == [1.0] * len(r.rs) and r.errors == 0


@pytest.mark.parametrize("path", bundled_environments(), ids=lambda p: p.name)
def test_noisy_agent_falls_as_predicted(path):
    env = load_environment(path)
    k, rate = 10, 0.15
    runs = [run_relay(env, NoisyAgent(rate, seed=s), k, seed=s).rs for s in range(40)]
    measured = [statistics.mean(r[i] for r in runs) for i in range(k)]
    sem = [statistics.stdev(r[i] for r in runs) / len(runs) ** 0.5 for i in range(k)]
    predicted = predicted_noisy_rs(env, rate, k)
    assert measured[-1] < 0.99  # the corruption is seen
    assert all(abs(m - p) <= 3 * e + 0.01 for m, p, e in zip(measured, predicted, sem)), (measured, predicted, sem)


def test_similarity_is_structural_not_textual():
    j, c = DOMAINS["json"], DOMAINS["csv"]
    assert j.similarity({"a.json": '{"x": 1, "y": [1, 2]}'}, {"a.json": '{\n  "y": [1, 2],\n  "x": 1\n}'}) == 1.0
    assert j.similarity({"a.json": '{"x": 1, "y": 2}'}, {"a.json": '{"x": 1}'}) < 1.0
    assert j.similarity({"a.json": '{"x": 1}'}, {"a.json": "{not json"}) == 0.0
    # the same table with another delimiter: only the delimiter term (0.05) is lost
    assert c.similarity({"t.csv": "a,b\n1,2\n3,4\n"}, {"t.csv": "a;b\n1;2\n3;4\n"}) == pytest.approx(0.95)
    assert c.similarity({"t.csv": "a,b\n1,2\n3,4\n"}, {"t.csv": "a,b\n1,2\n"}) == pytest.approx(0.2 + 0.3 + 0.0 + 0.05)


def test_rs_at_k_counts_interactions_as_the_paper_does():
    from mechlab.delegate import RelayResult, rs_at

    rs = [0.9 - 0.01 * i for i in range(10)]  # after round trips 1..10
    r = RelayResult("e", "json", "a", rs, 0, 20, 0.0)
    assert r.at(2) == rs[0] and r.at(10) == rs[4] and r.at(20) == rs[9] and r.at(22) is None
    d = r.to_dict()
    assert d["rs@2"] == rs[0] and d["rs@10"] == rs[4] and d["rs@20"] == rs[9] and d["interactions"][-1] == 20
    for bad in (0, 3, -2):
        with pytest.raises(ValueError, match="even k"):
            rs_at(rs, bad)


def test_parse_files_reads_labelled_blocks():
    text = "Here you go:\n```data.json\n{\"a\": 1}\n```\nand\n```csv t.csv\nx,y\n```\n"
    assert parse_files(text, {"data.json", "t.csv"}) == {"data.json": '{"a": 1}\n', "t.csv": "x,y\n"}
    assert parse_files("```data.json\n{\"a\": 1}\n", {"data.json"}) == {}  # truncated: no closing fence


class Scripted:
    """Replies from a script, in order: text, or an exception to raise."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)

    def respond(self, prompt, step):
        r = self.replies.pop(0)
        if isinstance(r, Exception):
            raise r
        return Reply(r)


def test_bad_answers_are_error_steps_not_crashes(tmp_path):
    env = load_environment(bundled_environments("json")[0])
    script = ["", "```exhibition.json\n{\"truncated\": ", TimeoutError("backend timed out"), "```other.json\n{}\n```"]
    r = run_relay(env, Scripted(script), round_trips=2, trace=tmp_path / "t.jsonl")
    assert r.errors == 4 and r.rs == [0.0, 0.0]
    steps = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert len(steps) == 4 and "TimeoutError" in steps[2]["error"] and steps[0]["error"].startswith("missing")
    assert {"prompt", "response", "parsed_files", "rs", "seconds", "task", "instruction"} <= set(steps[0])
    assert "exhibition.json" in steps[0]["prompt"] and "opening_hours.json" in steps[0]["prompt"]  # distractor shown
    r = run_relay(env, OracleAgent(), round_trips=1, distractors=False, trace=tmp_path / "u.jsonl")
    assert "opening_hours.json" not in (tmp_path / "u.jsonl").read_text()


def test_malformed_environments_are_clear_errors(tmp_path):
    src = bundled_environments("csv")[0]
    env = tmp_path / "env"
    shutil.copytree(src, env)
    spec = json.loads((env / "environment.json").read_text())
    cases = [({**spec, "domain": "yaml9"}, "unknown domain"), ({k: v for k, v in spec.items() if k != "tasks"}, "lacks 'tasks'"),
             ({**spec, "tasks": [spec["tasks"][0], spec["tasks"][0]]}, "two tasks"),
             ({**spec, "tasks": [{"name": "x", "forward": "do"}]}, "non-empty")]
    for bad, message in cases:
        (env / "environment.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=message):
            load_environment(env)
    (env / "environment.json").write_text(json.dumps(spec))
    (env / "seed" / "moons.csv").write_text("a,b\n1,2,3\n")
    with pytest.raises(ConfigError, match="does not parse"):
        load_environment(env)
    with pytest.raises(ConfigError, match="no environment.json"):
        load_environment(tmp_path)


def test_run_and_report(tmp_path):
    run(bundled_environments(), "oracle", round_trips=2, out=tmp_path)
    run(bundled_environments("csv"), "noisy:0.5", round_trips=2, seed=1, out=tmp_path)
    rows = report(tmp_path)
    assert {(r["domain"], r["agent"]) for r in rows} == {(d, "oracle") for d in DOMAINS} | {("csv", "noisy:0.5")}
    # RS@k counts interactions: 2 round trips = 4 interactions, so RS@2 and RS@4 exist and RS@10 does not
    assert all(r["RS@2"] == 1.0 for r in rows if r["agent"] == "oracle") and rows[0]["RS@10"] is None
    from mechlab.delegate import plot_report

    assert plot_report(tmp_path, tmp_path / "report.png").stat().st_size > 1000


class ScriptedServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers from a script: ("ok", text), ("status", code),
    ("garbage", bytes), ("truncated", text), ("slow", seconds)."""

    def __init__(self, script):
        import http.server
        import threading

        self.script, self.requests = list(script), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body, self.headers.get("Authorization")))
                kind, arg = outer.script.pop(0) if outer.script else ("status", 500)
                if kind == "slow":
                    import time

                    time.sleep(arg)
                    kind, arg = "ok", "late"
                if kind == "status":
                    self.send_response(arg)
                    self.end_headers()
                    return
                if kind == "garbage":
                    payload = arg
                else:
                    payload = json.dumps({"choices": [{"message": {"content": arg}}],
                                          "usage": {"prompt_tokens": 11, "completion_tokens": 7}}).encode()
                    if kind == "truncated":
                        payload = payload[: len(payload) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except BrokenPipeError:  # a "slow" reply after the client's timeout: the client has gone
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_http_backend_survives_a_hostile_server(tmp_path, monkeypatch):
    from mechlab.delegate.backends import OpenAIChatAgent

    env = load_environment(bundled_environments("json")[0])
    seed_text = env.seed["exhibition.json"]
    echo = f"```exhibition.json\n{seed_text}```"  # the seed back: right for backward steps
    server = ScriptedServer([("status", 503), ("ok", "no files here"),  # retried 503, then a reply without files
                             ("ok", echo),  # step 2 (backward): perfect
                             ("garbage", b"<html>oops"),  # step 3: not JSON
                             ("truncated", echo),  # step 4: cut-off body
                             ("slow", 2.0), ("slow", 2.0),  # step 5: times out twice: gives up
                             ("status", 401),  # step 6: not retried
                             ])
    monkeypatch.setenv("MECHLAB_TEST_KEY", "sekret")
    try:
        agent = OpenAIChatAgent("scripted-model", base_url=server.url, api_key_env="MECHLAB_TEST_KEY", timeout=0.5,
                                retries=1, backoff=0.01)
        r = run_relay(env, agent, round_trips=3, trace=tmp_path / "t.jsonl")
    finally:
        server.close()
    steps = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [s["error"] is None for s in steps] == [False, True, False, False, False, False]
    assert "missing" in steps[0]["error"] and "malformed" in steps[2]["error"] and "malformed" in steps[3]["error"]
    assert "gave up" in steps[4]["error"] and steps[5]["error"] == "HTTP 401"
    assert steps[1]["prompt_tokens"] == 11 and r.tokens == 2 * 18 and r.rs[0] == 1.0  # the echo restored the seed
    path, body, auth = server.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "scripted-model" and auth == "Bearer sekret"
    assert body["messages"][0]["content"].startswith("You are editing")


def test_record_domains_compare_structure():
    sql, pgn, po, ics = DOMAINS["sql"], DOMAINS["pgn"], DOMAINS["po"], DOMAINS["ics"]
    a = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT);"
    assert sql.similarity({"s.sql": a}, {"s.sql": "create table t (\n  id int primary key,\n  name text\n);"}) == 1.0
    assert 0.5 < sql.similarity({"s.sql": a}, {"s.sql": "CREATE TABLE t (id INT PRIMARY KEY);"}) < 1.0
    assert sql.similarity({"s.sql": a}, {"s.sql": "SELECT 1;"}) == 0.0  # not a schema: an unparseable answer
    assert pgn.check("g.pgn", "1. e4 e5 2. Ke3 *") is not None  # an illegal move is a parse error
    assert pgn.similarity({"g.pgn": "1. e4 e5 2. Nf3 *"}, {"g.pgn": "1.e4 e5 2.Nf3 *\n"}) == 1.0
    entries = ['msgid "a"\nmsgstr "A"\n', 'msgid "b"\nmsgstr "B"\n']
    same, swapped = "\n".join(entries), "\n".join(entries[::-1])
    assert po.similarity({"x.po": same}, {"x.po": swapped}) == pytest.approx(0.95)  # only the order term is lost
    cal = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\nBEGIN:VEVENT\nUID:1\nSUMMARY:s\nDTSTART:20260101T100000Z\nDTEND:20260101T110000Z\nEND:VEVENT\nEND:VCALENDAR\n"
    late = cal.replace("T100000Z", "T130000Z")
    assert 0.9 < ics.similarity({"c.ics": cal}, {"c.ics": late}) < 1.0  # three hours off: partial time credit


def cli(monkeypatch, capsys, *args):
    """`mechlab ARGS` in-process through the CLI's main (errors a user can cause: one line, exit 2)."""
    import sys

    from mechlab.cli import main

    monkeypatch.setattr(sys, "argv", ["mechlab", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    # a lingering test server's thread may print its own error report (socketserver's, between lines of dashes)
    err = re.sub(r"-{40}\n.*?-{40}\n", "", out.err, flags=re.DOTALL)
    return e.value.code, out.out, err


@pytest.mark.parametrize("args, message", [
    (["--backend", "noisy:5"], "rate"), (["--backend", "noisy:-1"], "rate"), (["--backend", "noisy:nan"], "rate"),
    (["--backend", "openai:"], "model name"), (["--backend", "local:"], "checkpoint"),
    (["--backend", "openai:m", "--timeout", "-1"], "timeout"), (["--backend", "openai:m", "--timeout", "0"], "timeout"),
    (["--backend", "openai:m", "--timeout", "nan"], "timeout"),
    (["--backend", "openai:m", "--base-url", "notaurl"], "http"),
    (["--round-trips", "0"], "round trips"), (["--round-trips", "-2"], "round trips"),
])
def test_bad_run_settings_are_one_line_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys, args, message):
    code, out, err = cli(monkeypatch, capsys, "delegate", "run", "--domain", "csv", "-o", str(tmp_path / "o"), *args)
    assert code == 2 and message in err and "Traceback" not in err and not list(tmp_path.glob("o/*.json"))
    # the library refuses the same settings
    backend = args[1] if args[0] == "--backend" else "oracle"
    kw = {"--timeout": "timeout", "--base-url": "base_url", "--round-trips": "round_trips"}
    extra = {kw[a]: (int(v) if a == "--round-trips" else float(v) if a == "--timeout" else v)
             for a, v in zip(args[2::2] if args[0] == "--backend" else args[::2],
                             args[3::2] if args[0] == "--backend" else args[1::2])}
    with pytest.raises(ConfigError, match=message):
        run(bundled_environments("csv"), backend, out=tmp_path / "lib", **extra)


def test_a_relay_whose_every_step_failed_is_marked_failed_and_left_out_of_report(tmp_path):
    class Refused:
        name = "openai:down"

        def respond(self, prompt, step):
            return Reply("", error="URLError: [Errno 111] Connection refused")

    env = load_environment(bundled_environments("csv")[0])
    r = run_relay(env, Refused(), round_trips=2)
    assert r.failed and "Connection refused" in r.failed
    d = r.to_dict()
    assert d["failed"] is True and "Connection refused" in d["failure"]
    (tmp_path / "down.json").write_text(json.dumps(d))
    ok = run_relay(env, OracleAgent(), round_trips=2).to_dict()
    (tmp_path / "ok.json").write_text(json.dumps({**ok, "agent": "openai:down"}))
    [row] = report(tmp_path)
    assert row["runs"] == 1 and row["failed"] == 1 and row["RS@2"] == 1.0
    assert not run_relay(env, OracleAgent(), round_trips=1).failed


def test_run_out_that_is_a_file_or_unwritable_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = cli(monkeypatch, capsys, "delegate", "run", "--domain", "csv", "--round-trips", "1", "-o", str(f))
    assert code == 2 and "not a directory" in err and "Traceback" not in err
    code, _, err = cli(monkeypatch, capsys, "delegate", "run", "--domain", "csv", "--round-trips", "1",
                       "-o", str(f / "sub"))
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_report_skips_broken_result_files_with_a_warning(tmp_path, monkeypatch, capsys):
    run(bundled_environments("csv")[:1], "oracle", round_trips=1, out=tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "shape.json").write_text(json.dumps({"domain": "csv", "agent": "oracle", "rs": "abc", "errors": 0}))
    (tmp_path / "list.json").write_text("[1, 2]")
    warnings = []
    [row] = report(tmp_path, warnings.append)
    assert row["runs"] == 1 and row["RS@2"] == 1.0
    assert len(warnings) == 3 and all(any(n in w for w in warnings) for n in ("broken.json", "shape.json", "list.json"))
    # the runs count and the means are over the same relays: a shorter relay makes RS@k unknown, not a subset mean
    (tmp_path / "long.json").write_text(json.dumps({"domain": "csv", "agent": "oracle", "rs": [0.5] * 5, "errors": 0}))
    [row] = report(tmp_path, warnings.append)
    assert row["runs"] == 2 and row["RS@2"] == 0.75 and row["RS@10"] is None
    code, out, err = cli(monkeypatch, capsys, "delegate", "report", "--runs", str(tmp_path))
    assert code == 0 and "broken.json" in err and "Traceback" not in err


def test_report_help_says_the_plot_is_against_interactions():
    from typer.testing import CliRunner

    from mechlab.cli import app

    r = CliRunner().invoke(app, ["delegate", "report", "--help"])
    assert r.exit_code == 0 and "interactions" in r.output


def test_the_cli_prints_a_relay_to_an_unreachable_endpoint_as_failed(tmp_path, monkeypatch, capsys):
    import mechlab.delegate.backends as backends

    monkeypatch.setattr(backends.time, "sleep", lambda s: None)
    code, out, err = cli(monkeypatch, capsys, "delegate", "run", "--env", str(bundled_environments("csv")[0]),
                         "--backend", "openai:m", "--base-url", "http://127.0.0.1:1/v1", "--round-trips", "1",
                         "-o", str(tmp_path))
    assert code == 2 and "FAILED" in err and "RS@" not in out
    [d] = [json.loads(f.read_text()) for f in tmp_path.glob("*.json")]
    assert d["failed"] is True
