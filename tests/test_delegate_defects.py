"""DELEGATE scorer defects, each fixed for its whole kind: a syntax error in XML costs locally (the elements after it
are recovered), content after the XML root, extra files in a reply and a changed namespace cost, an e-mail preamble
or one bad zone-file line costs one record, every bundled edit is visible to its scorer, large damaged inputs are
matched by bounded algorithms, and Python environments are scored by a test suite (``run_tests(state)``) run
contained, the official converter carrying a row's ``testing.py`` into the environment.

The expected ranges follow from each scorer's weights (class docstrings): with n records, one damaged record plus
one unreadable record cost at most about 2/n of the record terms, and an extra file among n seed files makes the
mean n/(n + 1)."""

import json
import re

import pytest

from mechlab.delegate import DOMAINS, OracleAgent, bundled_environments, load_environment, run_relay
from mechlab.delegate.domains import base
from mechlab.delegate.domains.documents import PythonDomain, PythonTestSuite, pass_rate
from mechlab.delegate.relay import apply_op

XML_DOMAINS = ("svg", "kml", "urdf", "xspf", "votable", "gpx")


def seed_of(domain):
    env = load_environment(bundled_environments(domain)[0])
    name, text = min(env.seed.items())
    return name, text


def score(domain, name, seed, answer):
    return DOMAINS[domain].similarity({name: seed}, {name: answer})


def readable(domain, text):
    return [r for r in DOMAINS[domain].parse(text)[1] if r is not base_unreadable()]


def base_unreadable():
    from mechlab.delegate.domains.records import UNREADABLE

    return UNREADABLE


def break_middle_tag(text):
    """A start tag in the middle of the document broken (``<name`` written ``<=name``)."""
    tags = [m.start() for m in re.finditer(r"<[A-Za-z]", text)]
    at = tags[len(tags) // 2]
    return text[: at + 1] + "=" + text[at + 1:], at


@pytest.mark.parametrize("domain", XML_DOMAINS)
def test_an_xml_syntax_error_costs_locally(domain):
    name, seed = seed_of(domain)
    broken, at = break_middle_tag(seed)
    s = score(domain, name, seed, broken)
    cut = score(domain, name, seed, seed[:at])  # what reading up to the error alone kept
    assert s < 1.0 and s > cut, (s, cut)
    assert s >= 0.6, s  # one damaged record (or point) and one unreadable record of many
    if domain != "gpx":  # every record after the error is read again (all but the damaged one)
        assert len(readable(domain, broken)) >= len(readable(domain, seed)) - 1


@pytest.mark.parametrize("domain", XML_DOMAINS)
def test_content_after_the_xml_root_and_a_changed_namespace_cost(domain):
    name, seed = seed_of(domain)
    after = score(domain, name, seed, seed + "\nHere is the edited file.\n")
    assert 0.75 <= after < 1.0, after  # one unreadable record
    duplicate_root = seed + seed[seed.index("<", seed.index("?>") + 2 if "?>" in seed else 0):]
    assert score(domain, name, seed, duplicate_root) < after  # a second root: its records are extra records
    m = re.search(r'xmlns="([^"]+)"', seed)
    if m:
        changed = score(domain, name, seed, seed.replace(m.group(1), m.group(1) + "/v9"))
        assert 0.5 <= changed < 1.0, changed  # every element's namespace field, one field of each


def test_xml_recovery_of_a_dropped_end_tag_and_a_broken_attribute():
    seed = ('<svg xmlns="http://www.w3.org/2000/svg">\n' + "".join(
        f'  <g id="g{i}">\n    <rect id="r{i}" x="{i}" y="1" width="2" height="3" />\n  </g>\n' for i in range(8))
        + "</svg>\n")
    no_end = seed.replace('height="3" />\n  </g>\n  <g id="g3">', 'height="3" />\n  <g id="g3">', 1)
    bad_attr = seed.replace('x="5"', "x=5", 1)
    for answer in (no_end, bad_attr):
        root, damage = base.readable_xml_root(answer)
        assert damage == 1  # one damaged place, not a cascade
        assert sum(1 for e in root.iter() if isinstance(e.tag, str) and e.tag.endswith("rect")) >= 7
        assert 0.7 <= score("svg", "d.svg", seed, answer) < 1.0


def test_an_email_preamble_costs_one_record():
    name, seed = seed_of("email")
    for preamble in ("Here is the edited email:\n\n", "From harbour@example.org Sun Dec  6 10:00:00 2026\n"):
        s = score("email", name, seed, preamble + seed)
        assert 0.8 <= s < 1.0, (preamble, s)


@pytest.mark.parametrize("bad", ["www IN A 999.1.1.1", "this is not a record", "mail IN MX", "$TTL soon",
                                 "x IN CNAME bad..name.", "(", '"unterminated'])
def test_one_bad_zone_line_costs_one_record(bad):
    name, seed = seed_of("zone")
    lines = seed.split("\n")
    at = len(lines) // 2
    s = score("zone", name, seed, "\n".join(lines[:at] + [bad] + lines[at:]))
    n = len(DOMAINS["zone"].parse(seed)[1])
    # one unreadable record among n: 0.15 count × n/(n + 1) + 0.80 × n/(n + 1) + 0.05 origin
    assert s == pytest.approx(0.15 * n / (n + 1) + 0.80 * n / (n + 1) + 0.05), s


# edits a structural scorer cannot see by design: formatting only (the parsed data is the same), and Python
# refactorings that keep the program's behaviour (the domain scores output and tests, as DELEGATE-52 does)
INVISIBLE_BY_DESIGN = {("json", "indent"), ("python", "rename"), ("python", "tabs"), ("python", "header"),
                       ("python", "constant")}


@pytest.mark.slow
def test_every_bundled_forward_edit_is_visible_to_its_scorer():
    seen = 0
    for path in bundled_environments():
        env = load_environment(path)
        domain = DOMAINS[env.domain]
        for task in env.tasks:
            if not task.op or (env.domain, task.op["kind"]) in INVISIBLE_BY_DESIGN:
                continue
            forward = apply_op(domain, task.op, env.seed)
            assert forward != env.seed, (env.name, task.name)
            assert domain.similarity(env.seed, forward) < 1.0, (env.name, task.name)
            seen += 1
    assert seen >= 90


@pytest.mark.parametrize("domain", sorted(set(DOMAINS) - {"python"}))
def test_an_extra_file_in_the_reply_costs_its_share(domain):
    env = load_environment(bundled_environments(domain)[0])
    first = min(env.seed)
    extra = {**env.seed, "leftover-" + first.rsplit("/", 1)[-1]: env.seed[first]}
    n = len(env.seed)
    assert DOMAINS[domain].similarity(env.seed, extra) == pytest.approx(n / (n + 1))


def test_matching_switches_to_a_banded_algorithm_above_a_size():
    calls = []

    def closeness(x, y):
        calls.append(1)
        return 1.0 / (1.0 + abs(x - y))

    n = 1000  # every item damaged (no exact pair): 10^6 pairs, above MATCH_EXACT_LIMIT
    seed, got = list(range(n)), [i + 0.25 for i in range(n)]
    assert n * n > base.MATCH_EXACT_LIMIT
    pairs = base.best_pairs(seed, got, closeness)
    assert len(calls) <= n * (2 * base.BAND + 1)  # banded, not n × m
    assert all(j == i for i, (j, _) in pairs.items())  # each damaged item still finds its partner
    calls.clear()
    small = base.best_pairs(seed[:50], got[:50], closeness)  # below the limit: the Hungarian method, n × m scores
    assert len(calls) == 50 * 50 and all(j == i for i, (j, _) in small.items())

    calls.clear()
    a, b = list(range(0, 3000, 2)), list(range(1, 3001, 2))  # nothing equal: the whole table is the middle
    assert len(a) * len(b) > base.ALIGN_EXACT_LIMIT
    base.aligned(a, b, lambda x, y: closeness(x, y) if abs(x - y) == 1 else (calls.append(1) or 0.0))
    assert len(calls) <= len(a) * (2 * base.BAND + 1)


def test_a_large_heavily_damaged_csv_scores_through_the_banded_matching():
    n = 1500
    seed = "id,name,value\n" + "".join(f"r{i},name {i},{i}\n" for i in range(n))
    damaged = "id,name,value\n" + "".join(f"r{i},name {i},{i + 0.5}\n" for i in range(n))  # every row changed
    # every row keeps 2 of 3 cells: 0.2 header + 0.6 × 2/3 + 0.15 order + 0.05 delimiter
    assert score("csv", "t.csv", seed, damaged) == pytest.approx(0.2 + 0.6 * 2 / 3 + 0.15 + 0.05)


# ---- Python test suites ----------------------------------------------------------------------------------

def test_pass_rate_reads_the_result_shapes():
    assert pass_rate(True) == 1.0 and pass_rate(False) == 0.0 and pass_rate(0.25) == 0.25 and pass_rate(3) == 1.0
    assert pass_rate((3, 4)) == 0.75 and pass_rate({"passed": 1, "total": 4}) == 0.25
    assert pass_rate({"passed": ["a", "b"], "failed": ["c", "d"]}) == 0.5 and pass_rate({"score": 0.5}) == 0.5
    assert pass_rate([True, False, {"passed": True}, {"passed": False}]) == 0.5
    with pytest.raises(ValueError):
        pass_rate("all good")


def test_the_bundled_python_environment_is_scored_by_its_tests_too():
    env = load_environment(bundled_environments("python")[0])
    assert env.tests is not None and env.tests.entry == "testing.py" and env.tests.state == "seed"
    assert env.similarity(env.seed) == 1.0
    wrong = {**env.seed, "primes.py": env.seed["primes.py"].replace("[False, False]", "[False, True]")}  # 1 prime
    output_only = DOMAINS["python"].similarity(env.seed, wrong)
    assert output_only < 1.0
    # 3 of the suite's 7 checks still pass (twin_primes and both goldbach calls); the weights are 0.5 and 0.5
    assert env.similarity(wrong) == pytest.approx(0.5 * output_only + 0.5 * 3 / 7)
    # the model cannot replace the suite: its own testing.py is overwritten by the environment's (and is extra)
    forged = {**wrong, "testing.py": "def run_tests(state):\n    return True\n"}
    assert env.similarity(forged) == pytest.approx(0.5 * DOMAINS["python"].similarity(env.seed, forged) + 0.5 * 3 / 7)


def test_a_test_suite_runs_contained():
    domain = PythonDomain()
    domain.timeout = 2.0
    seed = {"m.py": "print(1)\n"}

    def suite(body):
        return PythonTestSuite((("testing.py", "import os\n\ndef run_tests(state):\n" + body),), "testing.py", "s0")

    assert domain.test_score(suite("    return state == 's0'\n"), seed) == 1.0  # the state id is passed
    assert domain.test_score(suite("    return 'MECHLAB_SECRET' not in os.environ\n"), seed) == 1.0
    assert domain.test_score(suite("    while True:\n        pass\n"), seed) == 0.0  # the CPU limit
    assert domain.test_score(suite("    raise SystemExit(3)\n"), seed) == 0.0  # a crash
    assert domain.test_score(suite("    return 'not a result'\n"), seed) == 0.0  # nothing readable
    with pytest.raises(Exception, match="only python"):
        DOMAINS["csv"].similarity({"a.csv": "a\n1\n"}, {"a.csv": "a\n1\n"}, suite("    return 1\n"))


TESTING = '''import subprocess, sys


def run_tests(state_id):
    if state_id not in ("basic_state", "fn_state"):
        return {"passed": 0, "total": 1}
    out = subprocess.run([sys.executable, "report.py"], capture_output=True, text=True).stdout
    checks = [out.startswith("total 10"), "mean 2.5" in out]
    return {"passed": sum(checks), "total": len(checks)}
'''
REPORT = "values = [1, 2, 3, 4]\nprint('total', sum(values))\nprint('mean', sum(values) / len(values))\n"


def python_row(testing_path="testing.py"):
    return {"sample_id": "python9", "sample_type": "python", "sample_name": "Report",
            "metadata": {"start_state": "basic_state", "license": "CC0-1.0"},
            "states": [{"state_id": "basic_state", "context": ["report.py"], "solution_folder": "basic_state",
                        "prompts": [{"target_state": "fn_state", "prompt": "Wrap the report in a main function."}]},
                       {"state_id": "fn_state", "context": ["report.py"], "solution_folder": "fn_state",
                        "prompts": [{"target_state": "basic_state", "prompt": "Inline the main function."}]}],
            "files": {"basic_state/report.py": REPORT,
                      "fn_state/report.py": "def main():\n" + "".join("    " + x + "\n" for x in REPORT.splitlines())
                      + "\n\nmain()\n",
                      testing_path: TESTING}}


@pytest.mark.parametrize("testing_path", ["testing.py", "basic_state/testing.py"])
def test_the_converter_carries_an_official_test_suite_and_it_runs(tmp_path, testing_path):
    from mechlab.delegate.official import convert_official

    src = tmp_path / "delegate52.jsonl"
    src.write_text(json.dumps(python_row(testing_path)) + "\n")
    result = convert_official(src, tmp_path / "envs")
    assert [p.name for p in result.written] == ["python9"], result.skipped
    env = load_environment(result.written[0])
    assert sorted(env.seed) == ["report.py"] and env.tests.state == "basic_state"
    assert json.loads((result.written[0] / "environment.json").read_text())["tests"]["entry"] == "testing.py"
    assert env.similarity(env.seed) == 1.0
    wrong = {"report.py": REPORT.replace("[1, 2, 3, 4]", "[1, 2, 3, 5]")}
    assert env.similarity(wrong) < DOMAINS["python"].similarity(env.seed, wrong)  # the suite fails both checks
    r = run_relay(env, OracleAgent(), round_trips=1, distractors=False, trace=tmp_path / "t.jsonl")
    assert r.rs == [1.0]
    forward, backward = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert forward["forward_tests"] == 1.0 and "forward_tests" not in backward  # run_tests("fn_state") passes


def test_a_python_row_without_a_suite_is_scored_by_output_and_said(tmp_path):
    from mechlab.delegate.official import convert_official

    row = python_row()
    del row["files"]["testing.py"]
    src = tmp_path / "delegate52.jsonl"
    src.write_text(json.dumps(row) + "\n")
    result = convert_official(src, tmp_path / "envs")
    assert load_environment(result.written[0]).tests is None
    assert any("no testing.py" in n for n in result.notes)


# formats where the kind does not apply by design: a Python file with prose in it is no program (it scores 0, as
# its output is gone); a DNS zone is a set of RRsets, a record written twice is the same record (RFC 2181 §5)
@pytest.mark.parametrize("domain", sorted(set(DOMAINS) - {"python"}))
def test_prose_around_a_document_and_a_document_written_twice_cost(domain):
    """The same kinds (content after the root, a preamble) in every domain: prose before or after the document is
    one extra record (or leaf) among the seed's, never the whole file and never free; the whole document written
    twice doubles the records, so the record term about halves."""
    name, seed = seed_of(domain)
    for answer in (seed + "\nHere is the edited file.\n", "Here is the edited file:\n\n" + seed):
        s = score(domain, name, seed, answer)
        assert 0.5 <= s < 1.0, (domain, s)
    if domain != "zone":
        twice = score(domain, name, seed, seed + "\n" + seed)
        assert twice <= 0.8, (domain, twice)
