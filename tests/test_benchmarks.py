"""The benchmark scripts' conventions: every one takes --quick, and a quick run writes beside the committed
results (NAME.quick.json, NAME.quick.png), never over them; only the committed configuration (the defaults, or the
arguments a script registers for a result in COMMITTED) writes NAME.json, and every committed result's recorded
command writes that same file again. In-process and cheap: no benchmark is timed here, parsers only."""

import argparse
import ast
import contextlib
import fnmatch
import importlib
import importlib.util
import io
import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch

from mechlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
HELPERS = {"common", "llamacpp_tools"}  # modules the benchmarks import, not benchmarks themselves
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in HELPERS)
COMMITTED_RESULTS = sorted((BENCH / "results").glob("*.json"))


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The benchmarks folder importable, with results redirected to tmp_path/results."""
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    return common


def test_result_path_puts_quick_runs_beside_full_ones(bench, tmp_path):
    res = tmp_path / "results"
    assert bench.result_path("trellis_mse", quick=False) == res / "trellis_mse.json"
    assert bench.result_path("trellis_mse", quick=True) == res / "trellis_mse.quick.json"
    assert bench.result_path("gap", quick=True, suffix=".png") == res / "gap.quick.png"
    for bad in ("", "../x", "a/b", "x.quick"):
        with pytest.raises(ValueError):
            bench.result_path(bad, quick=False)
    full = bench.write_result("demo", {"a": 1.0}, quick=False)
    before = full.read_bytes()
    quick = bench.write_result("demo", {"a": 2.0}, quick=True)
    assert full.read_bytes() == before
    assert quick == res / "demo.quick.json"
    assert json.loads(quick.read_text())["quick"] is True and json.loads(before)["quick"] is False
    with pytest.raises(TypeError):  # every caller must say whether its run is the full one
        bench.write_result("demo", {"a": 3.0})


def test_quick_run_of_trellis_mse_leaves_the_full_results_alone(bench, tmp_path, monkeypatch):
    res = tmp_path / "results"
    res.mkdir()
    committed = BENCH / "results" / "trellis_mse.json"
    shutil.copy2(committed, res / "trellis_mse.json")
    before, repo_before = (res / "trellis_mse.json").read_bytes(), committed.read_bytes()
    mod = importlib.import_module("trellis_mse")
    # the script's own code path, with a stand-in codec: the trellis kernel's first build alone takes a minute
    monkeypatch.setattr(mod, "encode", lambda w, L, k, V, code, tail_biting: (w[:, ::V], None))
    monkeypatch.setattr(mod, "decode", lambda codes, L, k, V, code, start: codes.repeat_interleave(V, dim=1))
    monkeypatch.setattr(mod, "pack_codes", lambda codes, bits: torch.empty(codes.numel() * bits // 8, dtype=torch.uint8))
    monkeypatch.setattr(sys, "argv", ["benchmarks/trellis_mse.py", "--quick"])
    with contextlib.redirect_stdout(io.StringIO()):
        mod.main()
    assert (res / "trellis_mse.json").read_bytes() == before
    assert committed.read_bytes() == repo_before
    quick = json.loads((res / "trellis_mse.quick.json").read_text())
    assert quick["quick"] is True and quick["sequences"] == 16 and "mse_L12_lut" in quick
    assert not (BENCH / "results" / "trellis_mse.quick.json").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_takes_quick(bench, script, monkeypatch):
    mod = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{script}.py", "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        mod.main()
    assert exit_.value.code == 0
    assert "--quick" in out.getvalue()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_writes_through_result_path(script):
    """Output paths come from common.result_path / write_result(..., quick=...), never built by hand."""
    tree = ast.parse((BENCH / f"{script}.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    writes = [c for c in calls if c.func.id == "write_result"]
    assert writes, f"{script} writes no result"
    assert all(any(k.arg == "quick" for k in c.keywords) for c in writes)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(tree)
                                                                          if isinstance(n, ast.Attribute)}
    assert "RESULTS" not in names and "with_suffix" not in names and "with_name" not in names


# ---- which runs may write NAME.json ------------------------------------------------------------------------------
def test_is_reference_run_compares_with_the_defaults_or_the_registered_arguments(bench):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--lr", type=float, default="1e-3")  # a string default, converted by argparse
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--name", default="x")
    ap.add_argument("--models", nargs="+", required=True)
    ref = bench.is_reference_run
    assert ref(ap, ap.parse_args(["--models", "a"]), reference="--models a")
    assert not ref(ap, ap.parse_args(["--models", "a"]))  # the defaults have no models
    explicit = ap.parse_args(["--models", "a", "--n", "4", "--lr", "0.001", "--sizes", "1", "2"])
    assert ref(ap, explicit, reference=["--models", "a"])
    for changed in (["--quick"], ["--n", "5"], ["--lr", "2e-3"], ["--sizes", "1"], ["--sizes", "2", "1"],
                    ["--models", "b"], ["--name", "y"]):
        assert not ref(ap, ap.parse_args(["--models", "a", *changed]), reference="--models a"), changed
    assert ref(ap, ap.parse_args(["--models", "a", "--name", "y"]), ignore=("name",), reference="--models a")
    changed = bench.changed_arguments(ap, ap.parse_args(["--models", "a", "--n", "5"]), reference="--models a")
    assert changed == ["--n 5"]
    plain = argparse.ArgumentParser()
    plain.add_argument("--n", type=int, default=4)
    assert ref(plain, plain.parse_args([])) and ref(plain, plain.parse_args(["--n", "4"]))
    assert not ref(plain, plain.parse_args(["--n", "3"]))


def _script(name: str):
    """The benchmark module, its parser, and the arguments of the committed run of its main result (NAME.json, NAME
    the script's): the defaults unless the script registers others in COMMITTED."""
    mod = importlib.import_module(name)
    return mod, mod.build_parser(), shlex.split(getattr(mod, "COMMITTED", {}).get(name, ""))


# every option of every benchmark, changed (appended to the committed run's arguments; the last value wins); the
# user's reports first. Options that only name the output or cannot change the figures are in IGNORED instead.
CHANGED = {
    "delegate_smollm2": [["--quick"], ["--round-trips", "2"], ["--seed", "1"], ["--max-new-tokens", "64"],
                         ["--env", "csv-moons"], ["--no-distractors"], ["--budget-factor", "3"]],
    "arch_throughput": [["--batch", "1", "--seq", "8", "--vocab", "64", "--threads", "1"], ["--quick"],
                        ["--scale", "paper-small"], ["--d-model", "512"], ["--d-model", "256", "--batch", "8"],
                        ["--vocab", "4096"], ["--batch", "32"], ["--seq", "128"], ["--threads", "2"]],
    "train_throughput": [["--batch", "1"], ["--seq", "8"], ["--preset", "small"], ["--threads", "1"], ["--quick"]],
    "bcjr_speed": [["--threads", "64"], ["--quick"]],
    "trellis_mse": [["--sequences", "512"], ["--sequences", "16"], ["--k", "3"], ["--quick"]],
    "trellis_encode": [["--quick"]],
    "pmnet_throughput": [["--quick"], ["--batch", "4"], ["--seq", "64"], ["--threads", "2"]],
    "maps_speed": [["--docs", "500"], ["--embedder", "minilm"], ["--minilm-sample", "20"], ["--quick"]],
    "generate_speed": [["--quantized", "ckpt"], ["--bits", "4"], ["--L", "12"], ["--new-tokens", "128"],
                       ["--rounds", "9"], ["--threads", "1", "2", "4"], ["--quick"]],
    "qmatvec": [["--quick"], ["--shapes", "576x576"], ["--bits", "2", "3"], ["--L", "12"], ["--batch", "4"],
                ["--threads", "1"], ["--rounds", "3"], ["--seconds", "1.0"], ["--working-set", "0"]],
    "smollm2_position_gap": [["--models", "other"], ["--windows", "24"], ["--quick"], ["--bucket", "128"]],
    "smollm2_wikitext2": [["--quick"], ["--max-windows", "4"], ["--context", "1024"], ["--batch-size", "2"],
                          ["--bf16"]],
    "smollm2_whole_model": [["--quick"], ["--windows", "2"], ["--bits", "3"], ["--L", "16"], ["--embedding-bits", "4"],
                            ["--calib-sequences", "8"], ["--calib-seq-len", "256"], ["--seed", "1"]],
    "vs_llamacpp": [["--quick"], ["--types", "Q8_0"], ["--mechlab", "float"], ["--windows", "2"], ["--context", "512"],
                    ["--threads", "1"], ["--prompt", "64"], ["--new-tokens", "8"], ["--profile-tokens", "0"]],
    "gemma3_wikitext2": [["--quick"], ["--max-windows", "4"], ["--context", "1024"], ["--batch-size", "2"]],
    "gptq_gguf": [["--quick"], ["--formats", "q4_0"], ["--seeds", "0", "1"], ["--calib-sequences", "8"],
                  ["--calib-seq-len", "256"], ["--windows", "2"], ["--context", "512"], ["--threads", "2"],
                  ["--no-llama-cpp"], ["--no-act-order"]],
    "smollm2_ptq": [["--windows", "2"], ["--bits", "2"], ["--methods", "rtn"], ["--L", "16"], ["--code", "lut"],
                    ["--V", "2"], ["--group-size", "64"], ["--calib-corpus", "wikitext2-valid"],
                    ["--calib-sequences", "8"], ["--calib-seq-len", "256"], ["--seed", "1"], ["--ft-bits", "2"],
                    ["--ft-steps", "5"], ["--ft-lr", "5e-3"], ["--ft-batch-size", "1"], ["--ft-seq-len", "2048"],
                    ["--ft-schedule", "cosine"], ["--ft-embedding-lr", "1e-4"], ["--ft-from", "TAG"],
                    ["--sequential"], ["--quick"]],
}
IGNORED = {"smollm2_whole_model": {"threads": ["--threads", "1"]},
           "delegate_smollm2": {"threads": ["--threads", "2"], "resume": ["--resume"],
                                "lockstep": ["--lockstep", "8"]},
           "smollm2_ptq": {"name": ["--name", "elsewhere"], "fresh": ["--fresh"]},
           "smollm2_position_gap": {"name": ["--name", "elsewhere"]},
           "smollm2_wikitext2": {"data_dir": ["--data-dir", "/some/copy"]},
           "gemma3_wikitext2": {"data_dir": ["--data-dir", "/some/copy"]}}
NAMES_THE_OUTPUT = {"delegate_smollm2": {"backend": (["--backend", "llama-server"], "delegate_smollm2-llama-server")},
                    "smollm2_whole_model": {"finetuned": (["--finetuned", "421926b75c1a", "--embedding-bits", "4"],
                                                          "smollm2_whole_model_finetuned")}}
NAME_IS_A_NO_OP = {"smollm2_ptq"}  # one table for every configuration: --name is a deprecated alias with no effect


def test_the_tables_cover_every_benchmark():
    assert sorted(CHANGED) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_changed_writes_beside_the_committed_results(bench, script, tmp_path):
    mod, ap, base = _script(script)
    name, quick = mod.output(ap, ap.parse_args(base))
    assert not quick and bench.result_path(name, quick) == tmp_path / "results" / f"{name}.json"
    by_flag = {opt: a.dest for a in ap._actions for opt in a.option_strings}
    covered = set(IGNORED.get(script, {})) | set(NAMES_THE_OUTPUT.get(script, {}))
    for changed in CHANGED[script]:
        covered |= {by_flag[t] for t in changed if t in by_flag}
        name, quick = mod.output(ap, ap.parse_args(base + changed))
        assert quick, f"{script} {' '.join(changed)} would write {name}.json"
        assert bench.result_path(name, quick).name == f"{name}.quick.json"
    options = {a.dest for a in ap._actions if a.option_strings and a.dest != "help"}
    assert covered == options, "every option must be either changed above or listed as not changing the figures"


@pytest.mark.parametrize("script", sorted(NAMES_THE_OUTPUT))
def test_options_that_pick_another_committed_file(bench, script):
    mod, ap, base = _script(script)
    for changed, name in NAMES_THE_OUTPUT[script].values():
        assert mod.output(ap, ap.parse_args(base + changed)) == (name, False)
        assert mod.output(ap, ap.parse_args(base + changed + ["--quick"])) == (name, True)


def test_arch_throughput_c512_is_its_own_committed_configuration(bench):
    mod, ap, _ = _script("arch_throughput")
    c512 = ["--d-model", "512", "--batch", "8"]
    assert mod.output(ap, ap.parse_args(c512)) == ("arch_throughput_c512", False)
    for changed in (["--batch", "16"], ["--seq", "64"], ["--threads", "1"], ["--quick"]):
        assert mod.output(ap, ap.parse_args(c512 + changed)) == ("arch_throughput_c512", True)
    assert mod.output(ap, ap.parse_args(["--d-model", "1024", "--batch", "8"])) == ("arch_throughput_c1024", True)


@pytest.mark.parametrize("script", sorted(IGNORED))
def test_options_that_do_not_change_the_figures_keep_the_committed_file(script):
    mod, ap, base = _script(script)
    committed, _ = mod.output(ap, ap.parse_args(base))
    for dest, changed in IGNORED[script].items():
        name, quick = mod.output(ap, ap.parse_args(base + changed))
        if dest == "name" and script not in NAME_IS_A_NO_OP:  # another file: an unregistered name's committed
            # configuration is the defaults
            assert name == "elsewhere"
            assert quick == (base != [] or any(a.required for a in ap._actions))
        else:
            assert (name, quick) == (committed, False)
    if "name" in IGNORED[script] and script not in NAME_IS_A_NO_OP and not any(a.required for a in ap._actions):
        assert mod.output(ap, ap.parse_args(["--name", "elsewhere"])) == ("elsewhere", False)


def _recorded(path: Path) -> tuple[str, list[str]]:
    """(script, arguments) of the command recorded in a results file ("python [benchmarks/]NAME.py ARGS...")."""
    cmd = shlex.split(json.loads(path.read_text())["command"])
    at = next(i for i, t in enumerate(cmd) if t.endswith(".py"))
    return Path(cmd[at]).stem, cmd[at + 1:]


@pytest.mark.parametrize("path", COMMITTED_RESULTS, ids=lambda p: p.stem)
def test_a_recorded_command_rewrites_its_own_committed_file(bench, path):
    script, argv = _recorded(path)
    mod = importlib.import_module(script)
    ap = mod.build_parser()
    assert mod.output(ap, ap.parse_args(argv)) == (path.stem, False)


def test_registered_configurations_are_committed_results(bench):
    """Every COMMITTED entry names a committed file whose recorded command it is; every committed plot has its JSON."""
    for script in SCRIPTS:
        mod = importlib.import_module(script)
        for name, argv in getattr(mod, "COMMITTED", {}).items():
            path = BENCH / "results" / f"{name}.json"
            assert path.is_file(), f"{script}.COMMITTED[{name!r}]: no committed {path.name}"
            # a table of several registered runs (smollm2_ptq.RUNS) records the last of them that updated it
            runs = [shlex.split(r) for r in getattr(mod, "RUNS", (argv,))]
            assert _recorded(path)[0] == script and _recorded(path)[1] in runs
    for png in (BENCH / "results").glob("*.png"):
        made_by = {png.stem, png.stem.removesuffix("_finetune")}  # smollm2_ptq: NAME_finetune.png beside NAME.json
        assert any((png.parent / f"{stem}.json").is_file() for stem in made_by) or \
            any(png.parent.glob(f"{png.stem}-*.json")), png.name  # delegate_smollm2.png: one JSON per backend


# ---- smollm2_ptq: one table, a row per configuration keyed by its hash ----------------------------------------------
PTQ_TABLE = BENCH / "results" / "smollm2_ptq.json"


def test_config_key_is_the_sha256_of_the_sorted_config_json(bench):
    mod = importlib.import_module("smollm2_ptq")
    import hashlib

    config = {"model": {"method": "rtn", "bits": 4, "group_size": 128}, "eval": {"windows": 16}}
    text = '{"eval":{"windows":16},"model":{"bits":4,"group_size":128,"method":"rtn"}}'
    assert mod.config_key(config) == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert mod.config_key(json.loads(json.dumps(config, sort_keys=True))) == mod.config_key(config)
    assert len(mod.config_key(config)) == 12 and mod.config_key(config) != mod.config_key({**config, "eval": {}})


def test_the_ptq_table_holds_every_row_of_the_former_variant_files(bench):
    """The 21 former smollm2_ptq*.json files held 58 rows: 15 copies of the float row on 16 windows and 6 of it on
    149, so 39 distinct configurations; each row keeps its numbers, its configuration and the command that made it."""
    mod = importlib.import_module("smollm2_ptq")
    table = json.loads(PTQ_TABLE.read_text())
    rows = table["rows"]
    assert len(rows) == 39 and not table["quick"]
    assert sorted(p.name for p in (BENCH / "results").glob("smollm2_ptq*")) == ["smollm2_ptq.json",
                                                                              "smollm2_ptq_finetune.png"]
    ap = mod.build_parser()
    made = {}
    for key, row in rows.items():
        assert mod.config_key(row["config"]) == key
        script, argv = _recorded_command(row["command"])
        assert script == "smollm2_ptq" and mod.output(ap, ap.parse_args(argv)) == ("smollm2_ptq", False)
        made.setdefault(row["command"], set()).add(key)
    matched = [[run for run in mod.RUNS if bench.is_reference_run(ap, ap.parse_args(_recorded_command(c)[1]),
                                                                    ignore=mod.IGNORE, reference=run)] for c in made]
    assert all(len(m) == 1 for m in matched)  # every row was made by one registered run (--name aside)...
    assert sorted(m[0] for m in matched) == sorted(mod.RUNS)  # ...and every registered run made rows
    for command, keys in made.items():  # each run's rows are the configurations its arguments make
        args = ap.parse_args(_recorded_command(command)[1])
        want = {mod.config_key(mod.row_config(mod.model_config(args, m, b), args.windows))
                for m, b in mod.run_methods(args) if not args.ft_from}
        assert want <= keys, command
    by = {(r["method"], r["bits"], r["config"]["eval"]["windows"]): r["perplexity"] for r in rows.values()}
    assert by[("float32", 32, 16)] == 20.448601402324538 and by[("float32", 32, 149)] == 21.366066332689666
    assert by[("trellis L=12", 4, 16)] == 21.332279195167775 and by[("rtn", 2, 16)] == 2966732.3707204005
    assert by[("trellis L=12 hyb V=2 + fine-tune (40 steps, cosine, embedding too), wikitext2-valid calibration", 2,
               16)] == 30.89852180076365
    plus = [r for r in rows.values() if "from" in r["config"]["model"] and r["config"]["eval"]["windows"] == 149]
    assert len(plus) == 1 and plus[0]["perplexity"] == 31.85320838358712
    assert mod.config_key(mod.row_config(plus[0]["config"]["model"]["from"], 16)) == mod._FT300 in rows


def _recorded_command(command: str) -> tuple[str, list[str]]:
    cmd = shlex.split(command)
    at = next(i for i, t in enumerate(cmd) if t.endswith(".py"))
    return Path(cmd[at]).stem, cmd[at + 1:]


def test_a_ptq_run_replaces_its_own_rows_and_keeps_the_others(bench, tmp_path, monkeypatch):
    """The script's own code path with stand-ins for the model, the data and the evaluation (the real pipeline takes
    hours): a quick run writes its rows to smollm2_ptq.quick.json keyed by their configuration, a second run replaces
    the rows it recomputes and keeps the others; the committed table is left alone."""
    mod = importlib.import_module("smollm2_ptq")
    res = tmp_path / "results"
    res.mkdir()
    shutil.copy2(PTQ_TABLE, res / "smollm2_ptq.json")
    before = (res / "smollm2_ptq.json").read_bytes()
    monkeypatch.setenv("MECHLAB_CACHE", str(tmp_path / "cache"))
    model = torch.nn.Linear(2, 2)

    class Ck:
        path, tokenizer = tmp_path, None

    ck = Ck()
    ck.model = model
    calls = []
    ppl = iter(range(10, 100))
    monkeypatch.setattr(mod, "smollm2_checkpoint", lambda: ck)
    monkeypatch.setattr(mod, "token_stream", lambda *a: None)
    monkeypatch.setattr(mod, "evaluate", lambda m, s, w: {"perplexity": float(next(ppl)), "scored_tokens": 2047 * w})
    monkeypatch.setattr(mod, "target_linears", lambda m: {"l": model})
    monkeypatch.setattr(mod, "size_report", lambda m: {"total_bytes": 24, "bytes": {"quantized codes": 1,
                        "quantized side info": 1}, "bits_per_quantized_weight": 4.0})
    summary = {"layers": 1, "weights": 4, "rel_mse": 0.1, "proxy_loss": None}

    def make_model(ck_, method, bits, model_cfg, args, fresh):
        calls.append((method, bits, fresh))
        return model, summary, None, 1.0

    monkeypatch.setattr(mod, "make_model", make_model)
    for argv in (["--quick", "--methods", "rtn", "gptq"], ["--quick", "--methods", "gptq", "--fresh"]):
        monkeypatch.setattr(sys, "argv", ["benchmarks/smollm2_ptq.py", *argv])
        with contextlib.redirect_stdout(io.StringIO()):
            mod.main()
    assert calls == [("rtn", 2, False), ("gptq", 2, False), ("gptq", 2, True)]
    assert (res / "smollm2_ptq.json").read_bytes() == before
    quick = json.loads((res / "smollm2_ptq.quick.json").read_text())
    rows = quick["rows"]
    assert quick["quick"] and len(rows) == 3 and all(mod.config_key(r["config"]) == k for k, r in rows.items())
    by = {r["config"]["model"]["method"]: r for r in rows.values()}
    assert by["float32"]["perplexity"] == 13.0  # recomputed by the --fresh run
    assert by["rtn"]["perplexity"] == 11.0 and by["gptq"]["perplexity"] == 14.0  # rtn kept, gptq replaced
    assert by["gptq"]["command"].endswith("--methods gptq --fresh") and by["rtn"]["config"]["eval"]["windows"] == 2
    assert by["gptq"]["config"]["model"]["calibration"] == {"corpus": "gutenberg", "sequences": 8, "seq_len": 512,
                                                             "seed": 0, "sequential": False}


def test_ptq_ft_from_refuses_a_key_it_cannot_continue(bench, tmp_path):
    mod = importlib.import_module("smollm2_ptq")
    (tmp_path / "results").mkdir()
    shutil.copy2(PTQ_TABLE, tmp_path / "results" / PTQ_TABLE.name)
    ap = mod.build_parser()
    args = ap.parse_args(["--methods", "trellis-ft", "--bits", "2", "--ft-from", "000000000000"])
    with pytest.raises(ConfigError, match="no row with that key"):
        mod.parent_config(args.ft_from, args, 2)
    trellis = next(k for k, r in json.loads(PTQ_TABLE.read_text())["rows"].items() if r["method"] == "trellis L=12")
    with pytest.raises(ConfigError, match="not a trellis-ft model with 2 bits"):
        mod.parent_config(trellis, args, 2)
    assert mod.parent_config(mod._FT300, args, 2)["finetune"]["steps"] == 300
    assert mod.parent_config(mod.FORMER_TAGS[mod._FT300], args, 2) == mod.parent_config(mod._FT300, args, 2)
    # the position-gap benchmark's recorded models (former tags) resolve to the checkpoints this script saves
    gap = json.loads((BENCH / "results" / "smollm2_position_gap.json").read_text())["models"]
    rows = json.loads(PTQ_TABLE.read_text())["rows"]
    for tag in gap:
        key = next(k for k, t in mod.FORMER_TAGS.items() if t == tag)
        assert mod.saved_model(tag) == mod.saved_model(key) == mod.cache_dir() / "smollm2_ptq" / "models" / \
            mod.config_key(rows[key]["config"]["model"])


def test_trellis_mse_refuses_what_it_cannot_run(bench, monkeypatch, capsys):
    mod = importlib.import_module("trellis_mse")
    for argv, says in ((["--sequences", "0"], "--sequences 0"), (["--sequences", "-3"], "--sequences -3"),
                       (["--k", "0"], "--k 0"), (["--k", "4"], "--k 4"), (["--k", "9"], "must be 1 to 3")):
        monkeypatch.setattr(sys, "argv", ["benchmarks/trellis_mse.py", *argv])
        with pytest.raises(SystemExit) as exit_:
            mod.main()
        assert exit_.value.code == 2 and says in capsys.readouterr().err


# ---- experiments/edge_of_stability.py: the same rule ----------------------------------------------------------------
@pytest.fixture(scope="module")
def eos():
    spec = importlib.util.spec_from_file_location("edge_of_stability", REPO / "experiments" / "edge_of_stability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_edge_of_stability_writes_its_committed_files_only_from_the_committed_run(eos):
    results = REPO / "experiments" / "results"
    _, argv = _recorded(results / "edge_of_stability.json")
    args, quick = eos.parse_args(argv)
    assert not quick
    assert eos.output_paths(quick) == (results / "edge_of_stability.json", results / "edge_of_stability.png")
    reduced = "--steps 100 --seeds 0 --gd-lrs 0.4 --adam-lrs 0.02"  # the user's report
    for argv in (reduced, "--quick", "--steps 2999", "--every 25", "--tail 0.5", "--width 32", "--seeds 0 1",
                 "--iters 50", "--tol 1e-4", "--n 500", "--dim 10", "--outputs 2", "--depth 3"):
        args, quick = eos.parse_args(shlex.split(argv))
        assert quick, argv
        paths = eos.output_paths(quick)
        assert [p.name for p in paths] == ["edge_of_stability.quick.json", "edge_of_stability.quick.png"]
        ignore = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
        assert all(any(fnmatch.fnmatch(str(p.relative_to(REPO)), pat) for pat in ignore) for p in paths)


def test_edge_of_stability_quick_values_are_only_defaults(eos):
    args, quick = eos.parse_args(["--quick"])
    assert quick and (args.steps, args.gd_lrs, args.adam_lrs, args.seeds, args.every) == (200, [0.4], [0.02], [0], 20)
    args, _ = eos.parse_args(["--quick", "--steps", "100", "--seeds", "3", "4", "--every", "5"])
    assert (args.steps, args.seeds, args.every, args.gd_lrs) == (100, [3, 4], 5, [0.4])


@pytest.mark.parametrize("argv", ["--every 0", "--steps 0", "--steps -5", "--tail 0", "--tail 1", "--tail 1.5",
                                  "--tail -0.2", "--gd-lrs 0.2 0", "--adam-lrs -0.01", "--gd-lrs nan", "--seeds",
                                  "--seeds 0 0", "--iters 0", "--tol 0", "--width 0"])
def test_edge_of_stability_refuses_bad_arguments(eos, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        eos.parse_args(shlex.split(argv))
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_benchmark_parser_holds_the_shared_options(bench):
    ap = bench.benchmark_parser("doc", "a smoke run", threads=None, name="stem", data_dir=True)
    args = ap.parse_args([])
    assert (args.quick, args.threads, args.name, args.data_dir) == (False, None, "stem", None)
    assert ap.parse_args(["--quick", "--threads", "2"]).threads == 2
    several = bench.benchmark_parser("doc", "a smoke run", threads=[1, 2])
    assert several.parse_args([]).threads == [1, 2] and several.parse_args(["--threads", "1", "4"]).threads == [1, 4]
    plain = bench.benchmark_parser("doc", "a smoke run")
    assert vars(plain.parse_args([])) == {"quick": False}  # no --threads, --name or --data-dir unless asked for


def test_parse_benchmark_args_names_the_result_and_the_run(bench):
    mod, ap, _ = _script("trellis_mse")
    _, args, name, quick = bench.parse_benchmark_args(mod.build_parser, mod.output, [])
    assert (name, quick, args.k) == ("trellis_mse", False, 2)
    assert bench.parse_benchmark_args(mod.build_parser, mod.output, ["--k", "3", "--quick"])[2:] == ("trellis_mse_k3", True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_builds_its_parser_and_reads_its_arguments_through_the_helpers(script):
    source = (BENCH / f"{script}.py").read_text(encoding="utf-8")
    assert "benchmark_parser(" in source and "parse_benchmark_args(" in source, script
    assert "argparse.ArgumentParser(" not in source and '"--quick"' not in source, script
