"""The official DELEGATE-52 protocol: each step's required files come from its target state (wildcards allowed),
new files in a reply are carried forward (split / merge / rename edits), and the official JSONL converts into
environment folders (a tiny synthetic row in the release's schema; nothing is downloaded)."""

import json
import shutil

import pytest

from mechlab.delegate import NoisyAgent, OracleAgent, Reply, bundled_environments, load_environment, run_relay
from mechlab.delegate.official import convert_official
from mechlab.errors import ConfigError

MOONS = "name,planet,radius_km\nIo,Jupiter,1821.6\nEuropa,Jupiter,1560.8\nTitan,Saturn,2574.7\nRhea,Saturn,763.8\n"
JUPITER = "name,planet,radius_km\nIo,Jupiter,1821.6\nEuropa,Jupiter,1560.8\n"
SATURN = "name,planet,radius_km\nTitan,Saturn,2574.7\nRhea,Saturn,763.8\n"


def official_row(**over):
    row = {
        "sample_id": "spreadsheet9", "sample_type": "spreadsheet", "sample_name": "Moons",
        "metadata": {"start_state": "basic_state", "license": "CC0-1.0", "ok_to_redistribute": "yes"},
        "states": [
            {"state_id": "basic_state", "context": ["moons.csv"], "solution_folder": "basic_state",
             "prompts": [{"target_state": "split_state", "prompt": "Split moons.csv into one file per planet."},
                         {"target_state": "renamed_state", "prompt": "Rename moons.csv to satellites.csv."},
                         {"target_state": "dead_end", "prompt": "Delete everything."}]},
            {"state_id": "split_state", "context": ["moons_*.csv"], "solution_folder": "split_state",
             "prompts": [{"target_state": "basic_state", "prompt": "Merge the planet files into moons.csv."}]},
            {"state_id": "renamed_state", "context": ["satellites.csv"], "solution_folder": "renamed_state",
             "prompts": [{"target_state": "basic_state", "prompt": "Rename satellites.csv to moons.csv."}]},
            {"state_id": "dead_end", "context": ["x.csv"], "solution_folder": "dead_end", "prompts": []},
        ],
        "files": {"basic_state/moons.csv": MOONS, "split_state/moons_jupiter.csv": JUPITER,
                  "split_state/moons_saturn.csv": SATURN, "renamed_state/satellites.csv": MOONS,
                  "distractor_context/dwarfs.csv": "name,radius_km\nCeres,469.7\n"},
    }
    row.update(over)
    return row


@pytest.fixture
def converted(tmp_path):
    rows = [official_row(),
            official_row(sample_id="crystal1", sample_type="crystal"),
            official_row(sample_id="spreadsheet10", files={**official_row()["files"], "basic_state/x.bin": "base64:AAAA"}),
            official_row(sample_id="spreadsheet11", files={**official_row()["files"], "basic_state/moons.csv": "a,b\n1,2,3\n"}),
            {"sample_id": "broken"}]
    src = tmp_path / "delegate52.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return convert_official(src, tmp_path / "envs"), tmp_path


def test_the_converter_writes_overlapping_domains_and_says_what_it_skips(converted):
    result, tmp_path = converted
    assert [p.name for p in result.written] == ["spreadsheet9"]
    reasons = dict(result.skipped)
    assert "no mechlab domain" in reasons["crystal1"] and "binary file" in reasons["spreadsheet10"]
    assert "does not parse" in reasons["spreadsheet11"] and "lacks" in reasons["broken"]
    assert any("dead_end" in n for n in result.notes)
    env = load_environment(result.written[0])
    assert env.domain == "csv" and env.seed == {"moons.csv": MOONS} and set(env.distractors) == {"dwarfs.csv"}
    tasks = {t.name: t for t in env.tasks}
    assert set(tasks) == {"split_state", "renamed_state"}
    assert tasks["split_state"].forward_files == ("moons_*.csv",)
    assert tasks["split_state"].forward_state == {"moons_jupiter.csv": JUPITER, "moons_saturn.csv": SATURN}
    assert env.metadata["license"] == "CC0-1.0" and env.metadata["official_domain"] == "spreadsheet"
    with pytest.raises(ConfigError, match="not a file"):
        convert_official(tmp_path / "nope.jsonl", tmp_path / "x")


def test_split_and_rename_edits_relay_through_the_oracle(converted, tmp_path):
    result, _ = converted
    env = load_environment(result.written[0])
    r = run_relay(env, OracleAgent(), round_trips=4, trace=tmp_path / "t.jsonl")
    assert r.rs == [1.0] * 4 and r.errors == 0
    steps = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    split = next(i for i, s in enumerate(steps) if s["task"] == "split_state" and s["direction"] == "forward")
    assert "moons_*.csv" in steps[split]["prompt"] and steps[split]["parsed_files"] == ["moons_jupiter.csv", "moons_saturn.csv"]
    back = steps[split + 1]["prompt"]  # the new files were carried into the next state
    assert "moons_jupiter.csv" in back and "moons_saturn.csv" in back and "\nIo,Jupiter" in back
    assert NoisyAgent(1.0).name == "noisy:1" and run_relay(env, NoisyAgent(1.0), round_trips=2).rs[-1] < 1.0


class Scripted:
    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)

    def respond(self, prompt, step):
        return Reply(self.replies.pop(0))


def test_a_wildcard_no_file_matches_is_a_missing_file(converted):
    result, _ = converted
    env = load_environment(result.written[0])
    env.tasks = [t for t in env.tasks if t.name == "split_state"]
    ok = f"```moons_jupiter.csv\n{JUPITER}```\n```moons_saturn.csv\n{SATURN}```\n"
    back = f"```moons.csv\n{MOONS}```\n"
    r = run_relay(env, Scripted([ok, back, "```jupiter.txt\nIo\n```\n", back]), round_trips=2)
    assert r.errors == 1 and r.rs == [1.0, 1.0]
    # new names alone on a block's first line are read when they match the target state's pattern
    inside = f"```\nmoons_jupiter.csv\n{JUPITER}```\n```csv\nmoons_saturn.csv\n{SATURN}```\n"
    r = run_relay(env, Scripted([inside, back]), round_trips=1)
    assert r.errors == 0 and r.rs == [1.0]


def test_rename_file_works_in_any_domain_and_forward_files_are_checked(tmp_path):
    env_dir = tmp_path / "env"
    shutil.copytree(bundled_environments("json")[0], env_dir)
    spec = json.loads((env_dir / "environment.json").read_text())
    seed = sorted(p.name for p in (env_dir / "seed").iterdir())[0]
    spec["tasks"] = [{"name": "rename", "forward": f"Rename {seed} to renamed.json.", "backward": "Rename it back.",
                      "op": {"kind": "rename_file", "old": seed, "new": "renamed.json"}, "forward_files": ["renamed.json"]}]
    (env_dir / "environment.json").write_text(json.dumps(spec))
    r = run_relay(load_environment(env_dir), OracleAgent(), round_trips=2)
    assert r.rs == [1.0, 1.0] and r.errors == 0
    spec["tasks"][0]["forward_files"] = "renamed.json"
    (env_dir / "environment.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="forward_files"):
        load_environment(env_dir)


def test_the_converter_skips_malformed_rows_with_their_reasons_and_keeps_earlier_conversions(tmp_path):
    good = official_row()
    bad_state = official_row(sample_id="s_nostate", states=[{"context": ["moons.csv"]}])
    files_list = official_row(sample_id="s_files", files=["basic_state/moons.csv"])
    no_target = official_row(sample_id="s_prompt")
    no_target["states"] = [dict(no_target["states"][0], prompts=[{"prompt": "Split."}])] + no_target["states"][1:]
    start_list = official_row(sample_id="s_start", metadata={"start_state": ["basic_state"]})
    src = tmp_path / "d.jsonl"
    src.write_bytes(b"".join([json.dumps(good).encode() + b"\n", b"garbage {\n", b"\xff\xfe not utf-8\n",
                              *(json.dumps(r).encode() + b"\n" for r in (bad_state, files_list, no_target, start_list)),
                              json.dumps(good).encode() + b"\n"]))
    r = convert_official(src, tmp_path / "envs")
    assert [p.name for p in r.written] == ["spreadsheet9"]
    reasons = dict(r.skipped)
    assert set(reasons) == {"line 2", "line 3", "s_nostate", "s_files", "s_prompt", "s_start", "spreadsheet9"}
    assert "not JSON" in reasons["line 2"] and "UTF-8" in reasons["line 3"] and "state_id" in reasons["s_nostate"]
    assert "files" in reasons["s_files"] and "target_state" in reasons["s_prompt"] and "start_state" in reasons["s_start"]
    assert "duplicate sample_id" in reasons["spreadsheet9"]
    # a later conversion whose row is skipped leaves the earlier conversion of that sample in place
    src2 = tmp_path / "d2.jsonl"
    src2.write_text(json.dumps(official_row(files={**good["files"], "basic_state/moons.csv": "a,b\n1,2,3\n"})) + "\n")
    r2 = convert_official(src2, tmp_path / "envs")
    assert not r2.written and (tmp_path / "envs" / "spreadsheet9" / "environment.json").is_file()
    assert not [p for p in (tmp_path / "envs").iterdir() if p.name.startswith(".")]
    # a mechlab domain name is mapped to the official one; an unknown one is refused with the valid names
    assert [p.name for p in convert_official(src, tmp_path / "envs2", {"csv"}).written] == ["spreadsheet9"]
    with pytest.raises(ConfigError, match="spreadsheet"):
        convert_official(src, tmp_path / "envs3", {"sheets"})


def test_the_converter_cli_errors_are_one_line_exit_2_and_help_lists_the_domains(tmp_path, capsys):
    from mechlab.delegate.official import main

    assert main([str(tmp_path / "missing.jsonl"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "not a file" in err
    assert main(["--help", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "official" in out and "spreadsheet (mechlab csv)" in out and not (tmp_path / "out").exists()
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps(official_row()) + "\n")
    assert main([str(src), str(tmp_path / "out"), "nope"]) == 2
    assert "spreadsheet" in capsys.readouterr().err
