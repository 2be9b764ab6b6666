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

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "common")
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
                         ["--env", "csv-moons"], ["--no-distractors"]],
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
    "vs_llamacpp": [["--quick"], ["--types", "Q8_0"], ["--mechlab", "float"], ["--windows", "2"], ["--context", "512"],
                    ["--threads", "1"], ["--prompt", "64"], ["--new-tokens", "8"]],
    "gemma3_wikitext2": [["--quick"], ["--max-windows", "4"], ["--context", "1024"], ["--batch-size", "2"]],
    "smollm2_ptq": [["--windows", "2"], ["--bits", "2"], ["--methods", "rtn"], ["--L", "16"], ["--code", "lut"],
                    ["--V", "2"], ["--group-size", "64"], ["--calib-corpus", "wikitext2-valid"],
                    ["--calib-sequences", "8"], ["--calib-seq-len", "256"], ["--seed", "1"], ["--ft-bits", "2"],
                    ["--ft-steps", "5"], ["--ft-lr", "5e-3"], ["--ft-batch-size", "1"], ["--ft-seq-len", "2048"],
                    ["--ft-schedule", "cosine"], ["--ft-embedding-lr", "1e-4"], ["--ft-from", "TAG"],
                    ["--sequential"], ["--quick"]],
}
IGNORED = {"smollm2_ptq": {"name": ["--name", "elsewhere"], "fresh": ["--fresh"]},
           "smollm2_position_gap": {"name": ["--name", "elsewhere"]},
           "smollm2_wikitext2": {"data_dir": ["--data-dir", "/some/copy"]},
           "gemma3_wikitext2": {"data_dir": ["--data-dir", "/some/copy"]}}


def test_the_tables_cover_every_benchmark():
    assert sorted(CHANGED) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_changed_writes_beside_the_committed_results(bench, script, tmp_path):
    mod, ap, base = _script(script)
    name, quick = mod.output(ap, ap.parse_args(base))
    assert not quick and bench.result_path(name, quick) == tmp_path / "results" / f"{name}.json"
    by_flag = {opt: a.dest for a in ap._actions for opt in a.option_strings}
    covered = set(IGNORED.get(script, {}))
    for changed in CHANGED[script]:
        covered |= {by_flag[t] for t in changed if t in by_flag}
        name, quick = mod.output(ap, ap.parse_args(base + changed))
        assert quick, f"{script} {' '.join(changed)} would write {name}.json"
        assert bench.result_path(name, quick).name == f"{name}.quick.json"
    options = {a.dest for a in ap._actions if a.option_strings and a.dest != "help"}
    assert covered == options, "every option must be either changed above or listed as not changing the figures"


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
        if dest == "name":  # another file: the committed configuration of an unregistered name is the defaults
            assert name == "elsewhere"
            assert quick == (base != [] or any(a.required for a in ap._actions))
        else:
            assert (name, quick) == (committed, False)
    if "name" in IGNORED[script] and not any(a.required for a in ap._actions):
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
            assert _recorded(path) == (script, shlex.split(argv))
    for png in (BENCH / "results").glob("*.png"):
        made_by = {png.stem, png.stem.removesuffix("_finetune")}  # smollm2_ptq: NAME_finetune.png beside NAME.json
        assert any((png.parent / f"{stem}.json").is_file() for stem in made_by), png.name


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
