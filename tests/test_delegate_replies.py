"""DELEGATE replies as real models write them: fences of any length, filename forms, line endings, repeated names,
and files that hold fences themselves; a perfect editor's reply in any of these shapes scores 1.0."""

import json

import pytest

from mechlab.delegate import (
    DOMAINS,
    REPLY_SHAPES,
    OracleAgent,
    bundled_environments,
    format_files,
    load_environment,
    parse_reply,
    run_relay,
    shaped_reply,
)

SEED = json.dumps({"title": "t", "items": [{"n": 1}, {"n": 2}, {"n": 3}]}, indent=2) + "\n"
BODY = SEED.rstrip()


def read(text, required=("a.json",), known=("a.json", "b.json")):
    return parse_reply(text, list(required), set(known), lambda n, t: DOMAINS["json"].check(n, t) is None)


def rs(text):
    return DOMAINS["json"].similarity({"a.json": SEED}, read(text).files)


# every case a perfect editor's reply (the seed back) that scored RS 0.0 before, and its relatives
PERFECT = {
    "bold name, then a ```json fence": f"**a.json**\n```json\n{BODY}\n```\n",
    "name alone on the first line of a plain fence": f"```\na.json\n{BODY}\n```\n",
    "a 4-backtick fence": f"````a.json\n{BODY}\n````\n",
    "CRLF line endings": f"```a.json\n{BODY}\n```\n".replace("\n", "\r\n"),
    "old-Mac CR line endings": f"```a.json\n{BODY}\n```\n".replace("\n", "\r"),
    "a byte-order mark": f"\ufeff```a.json\n{BODY}\n```\n",
    "a byte-order mark inside the block": f"```a.json\n\ufeff{BODY}\n```\n",
    "a tilde fence": f"~~~a.json\n{BODY}\n~~~\n",
    "trailing spaces after both fences": f"```a.json  \n{BODY}\n```   \n",
    "a language tag, then the name": f"```json a.json\n{BODY}\n```\n",
    "a language tag other than the extension": f"```javascript a.json\n{BODY}\n```\n",
    "file= in the info string": f"```json file=a.json\n{BODY}\n```\n",
    "a heading": f"### a.json\n\n```json\n{BODY}\n```\n",
    "File: before the fence": f"File: a.json\n```\n{BODY}\n```\n",
    "a backticked name with a colon": f"`a.json`:\n```json\n{BODY}\n```\n",
    "bold File: with a backticked name": f"**File: `a.json`**\n```json\n{BODY}\n```\n",
    "a <file_name> tag": f"<file_name>a.json</file_name>\n```\n{BODY}\n```\n",
    "prose naming the file": f"Here is the updated a.json:\n\n```json\n{BODY}\n```\n",
    "File: on the first line inside": f"```json\nFile: a.json\n{BODY}\n```\n",
    "// name on the first line inside": f"```json\n// a.json\n{BODY}\n```\n",
    "trailing prose after the fence": f"```a.json\n{BODY}\n```\nI renamed nothing else. Let me know!\n",
    "one unnamed block for one required file": f"Sure:\n```json\n{BODY}\n```\n",
    "an indented block": "\n".join("   " + x for x in f"```a.json\n{BODY}\n```".split("\n")) + "\n",
    "a <think> draft first": f"<think>\n```a.json\n{{\"title\": \n```\n</think>\n```a.json\n{BODY}\n```\n",
    "a <thinking> draft first": f"<thinking>```a.json\n{{}}\n```</thinking>\n```a.json\n{BODY}\n```\n",
    "a title= key in the info string": f'```json title="a.json"\n{BODY}\n```\n',
    "a colon after the name in the info string": f"```a.json:\n{BODY}\n```\n",
    "a section number before the only block": f"### 2.5\n```json\n{BODY}\n```\n",
    "the whole file, then a changed excerpt": f"```a.json\n{BODY}\n```\nThe change:\n```a.json\n{{\"title\": \"t\"}}\n```\n",
    "a truncated draft, then the whole file": f"```a.json\n{BODY[:30]}\n```\nFixed:\n```a.json\n{BODY}\n```\n",
}


@pytest.mark.parametrize("case", list(PERFECT), ids=list(PERFECT))
def test_a_perfect_reply_in_any_shape_scores_one(case):
    assert rs(PERFECT[case]) == 1.0


def test_repeated_names_keep_the_complete_file_and_say_so():
    r = read(PERFECT["the whole file, then a changed excerpt"])
    assert r.files["a.json"] == SEED and any("2 blocks, kept block 1" in n for n in r.notes)
    r = read(PERFECT["one unnamed block for one required file"])
    assert any("unnamed" in n for n in r.notes)
    # two required files: an unnamed block is not guessed
    assert read(f"```json\n{BODY}\n```\n", required=("a.json", "b.json")).files == {}


def test_fences_nest_and_a_cut_off_block_gives_no_file():
    md = "# Notes\n\n```python\nprint(1)\n```\n\nEnd.\n"
    # a Markdown file in a fence that is too short: its tagged inner fence nests
    assert read(f"```notes.md\n{md}```\n", ("notes.md",), ("notes.md",)).files == {"notes.md": md}
    # in a longer fence, as format_files writes it
    assert read(format_files({"notes.md": md}), ("notes.md",), ("notes.md",)).files == {"notes.md": md}
    cut = read(f"```a.json\n{BODY[:20]}\n")
    assert cut.files == {} and any("unclosed" in n for n in cut.notes)
    # a closing fence must be at least as long as the opening one
    assert read(f"````a.json\n{BODY}\n```\n````\n").files["a.json"] == SEED.replace(BODY, BODY + "\n```")


def test_files_holding_fences_survive_the_oracle(tmp_path):
    """A Python module whose docstring holds ``` lines and a Markdown-like text: serialised in a longer fence,
    read back exactly, and the oracle relay through them scores 1.0."""
    py = '"""Usage:\n\n```\n>>> import m\n```\n\n````\nfour\n````\n"""\n\nprint("ok")\n'
    text = format_files({"m.py": py})
    assert text.startswith("`````m.py\n")  # one backtick longer than the longest run inside
    assert read(text, ("m.py",), ("m.py",)).files == {"m.py": py}
    env_dir = tmp_path / "env"
    (env_dir / "seed").mkdir(parents=True)
    (env_dir / "distractors").mkdir()
    (env_dir / "seed" / "m.py").write_text(py)
    (env_dir / "distractors" / "d.py").write_text('"""```\nx\n```"""\nprint(2)\n')
    tasks = [{"name": f"t{i}", "forward": "f", "backward": "b", "op": op} for i, op in enumerate([
        {"kind": "header", "line": "# a header"}, {"kind": "rename", "old": "print", "new": "print"},
        {"kind": "tabs"}])]
    (env_dir / "environment.json").write_text(json.dumps({"domain": "python", "name": "fenced", "tasks": tasks}))
    r = run_relay(load_environment(env_dir), OracleAgent(), round_trips=3)
    assert r.rs == [1.0, 1.0, 1.0] and r.errors == 0


def test_every_reply_shape_reads_back_every_bundled_file_set():
    for path in bundled_environments():
        env = load_environment(path)
        files = {**env.seed, **env.distractors}
        want = {k: v.rstrip() + "\n" for k, v in files.items()}
        for shape in REPLY_SHAPES:
            got = parse_reply(shaped_reply(files, shape), sorted(env.seed), set(files)).files
            assert got == want, (path.name, shape)
            one = sorted(env.seed)[0]
            got = parse_reply(shaped_reply({one: files[one]}, shape), [one], set(files)).files
            assert got == {one: want[one]}, (path.name, shape, "single")
    with pytest.raises(ValueError, match="unknown reply shape"):
        shaped_reply({}, "haiku")


def test_the_noisy_agent_varies_its_reply_shapes(tmp_path):
    from mechlab.delegate import NoisyAgent

    env = load_environment(bundled_environments("csv")[0])
    run_relay(env, NoisyAgent(0.0, seed=3), round_trips=10, trace=tmp_path / "t.jsonl")
    steps = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    starts = {s["response"][:12] for s in steps}
    assert len(starts) >= 5 and all(s["error"] is None and s["rs"] in (None, 1.0) for s in steps)
    assert all("parse_notes" in s for s in steps)


def test_a_lone_closing_think_drops_the_draft_before_it_and_an_unclosed_think_gives_no_file():
    text = "Draft:\n```data.csv\na,b\n9,9\n9,9\n9,9\n```\n</think>\nFinal:\n```data.csv\na,b\n1,2\n```"
    r = parse_reply(text, ["data.csv"])
    assert r.files == {"data.csv": "a,b\n1,2\n"} and any("</think>" in n for n in r.notes)
    r = parse_reply(text.replace("</think>", "</thinking>"), ["data.csv"])
    assert r.files == {"data.csv": "a,b\n1,2\n"}
    r = parse_reply("<think>I will write\n```data.csv\na,b\n9,9\n```\nand then", ["data.csv"])
    assert r.files == {} and any("unclosed <think>" in n for n in r.notes)


def test_a_prose_line_naming_several_files_labels_no_block_and_bytes_never_raise():
    r = parse_reply("Here is a.csv and b.csv:\n```csv\nx,y\n```\nand the second:\n```csv\nz,w\n```",
                    ["a.csv", "b.csv"])
    assert "a.csv" not in r.files and "b.csv" not in r.files
    assert any("a.csv, b.csv" in n for n in r.notes)
    # one name on the line still labels the block
    assert parse_reply("Here is a.csv:\n```csv\nx,y\n```", ["a.csv", "b.csv"]).files == {"a.csv": "x,y\n"}
    assert parse_reply(b"```a.csv\nx\xff\n```\n", ["a.csv"]).files == {"a.csv": "x\ufffd\n"}


def test_a_block_labelled_with_a_path_to_a_required_name_is_that_file():
    r = parse_reply("**output/data.csv**\n```csv\na,b\n1,2\n```\n", ["data.csv"])
    assert r.files == {"data.csv": "a,b\n1,2\n"} and any("output/data.csv" in n for n in r.notes)
