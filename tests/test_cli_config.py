"""The CLI generated from the config dataclasses (mechlab.cli_config): field docstrings as the only help text,
config files merged under explicit flags, one quantize subcommand per registered method."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from mechlab.cli import app, generated_command
from mechlab.cli_config import config_options, field_docs, merged
from mechlab.errors import ConfigError, MechlabError
from mechlab.quant.registry import cli_names, config_to_dict, method_named
from mechlab.train import TrainConfig

runner = CliRunner()


def command(*path: str):
    cmd = generated_command(path[0])
    for p in path[1:]:
        cmd = cmd.commands[p]
    return cmd


def params_by_field(cmd) -> dict[tuple[str, ...], object]:
    """{field path: click parameter} of a generated command (its parameters are named cfg__a__b)."""
    return {tuple(p.name.split("__")[1:]): p for p in cmd.params if p.name.startswith("cfg__")}


class Captured(Exception):
    """Raised by the stand-ins of train and quantize_checkpoint to hand the config they were called with back."""

    def __init__(self, config):
        super().__init__("captured")
        self.config = config


@pytest.fixture
def capture_train(monkeypatch):
    import mechlab.train

    def fake(cfg, resume=False, overwrite=False):
        raise Captured(cfg)

    monkeypatch.setattr(mechlab.train, "train", fake)

    def run(*args: str) -> TrainConfig:
        r = runner.invoke(app, ["train", *args])
        assert isinstance(r.exception, Captured), r.output
        return r.exception.config

    return run


@pytest.fixture
def capture_quantize(monkeypatch):
    import mechlab.quant.run

    def fake(checkpoint, config, out, **kwargs):
        raise Captured((config, kwargs))

    monkeypatch.setattr(mechlab.quant.run, "quantize_checkpoint", fake)

    def run(*args: str):
        r = runner.invoke(app, ["quantize", *args])
        assert isinstance(r.exception, Captured), r.output
        return r.exception.config

    return run


def test_field_docs_reads_attribute_docstrings_and_the_generator_needs_one():
    @dataclass
    class Toy:
        a: int = 1
        """The a.
        Second line."""
        b: str = "x"  # a comment is not a docstring
        c: tuple[str, ...] = ("p", "q")
        """Patterns."""

    assert field_docs(Toy) == {"a": "The a. Second line.", "c": "Patterns."}
    with pytest.raises(ConfigError, match="Toy.b has no docstring"):
        config_options(Toy)
    opts = {o.field: o for o in config_options(Toy, skip={"b"})}
    assert opts["c"].typer_default() == "p,q" and opts["c"].to_field("x, y,") == ("x", "y")


def test_every_train_config_field_is_an_option_with_its_docstring_as_help():
    params, docs = params_by_field(command("train")), field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        assert f.name in docs, f"TrainConfig.{f.name} has no docstring"
        p = params[(f.name,)]
        assert p.help == docs[f.name]
        if f.default is not dataclasses.MISSING and f.default is not None:
            assert p.default == f.default, f.name
    # the spellings the CLI had before it was generated still work
    assert {"--preset", "--warmup", "--adam-eps", "--out"} <= {o for p in params.values() for o in p.opts}


def test_train_flags_reach_the_config(capture_train, tmp_path):
    cfg = capture_train("--preset", "small", "--warmup", "7", "--adam-eps", "1e-6", "--no-resume", "--set",
                        "d_model=48", "--set", "arch=looped", "--out", str(tmp_path / "r"), "--eval-windows", "3")
    assert (cfg.model, cfg.warmup_steps, cfg.eps, cfg.eval_windows) == ("small", 7, 1e-6, 3)
    assert cfg.model_overrides == {"d_model": 48, "arch": "looped"} and cfg.out_dir == str(tmp_path / "r")
    assert dataclasses.replace(cfg, model="tiny", warmup_steps=100, eps=1e-8, eval_windows=32, model_overrides={},
                               out_dir="runs/train") == TrainConfig()


def test_config_file_and_explicit_flags_merge(capture_train, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "lr": 0.01, "out_dir": str(tmp_path / "from-file"), "seq_len": 32}))
    cfg = capture_train("--config", str(path), "--lr", "0.02", "--batch-size", "4")
    # explicit flags win; what the file sets keeps its value; the flags' defaults never override the file
    assert (cfg.lr, cfg.batch_size, cfg.steps, cfg.seq_len) == (0.02, 4, 5, 32)
    assert cfg.out_dir == str(tmp_path / "from-file")
    assert capture_train("--config", str(path), "--out", str(tmp_path / "o")).out_dir == str(tmp_path / "o")
    path.write_text(json.dumps({"lr": 0.01, "no_such_field": 1}))
    r = runner.invoke(app, ["train", "--config", str(path)])
    assert isinstance(r.exception, ConfigError) and "no_such_field" in str(r.exception)


def test_merged_lays_given_values_over_nested_configs():
    base = {"a": 1, "inner": {"b": 2, "c": 3}}
    assert merged(base, {("inner", "c"): 9, ("a",): 0}) == {"a": 0, "inner": {"b": 2, "c": 9}}
    assert base == {"a": 1, "inner": {"b": 2, "c": 3}}


@pytest.mark.parametrize("name", cli_names())
def test_one_quantize_subcommand_per_method_with_only_its_own_options(name):
    m = method_named(name)
    params = params_by_field(command("quantize", name))
    cls = m.config
    docs = field_docs(cls)
    nested = {f.name: f.type for f in dataclasses.fields(cls) if dataclasses.is_dataclass(getattr(cls(), f.name))}
    expected = set()
    for f in dataclasses.fields(cls):
        if f.name in nested:
            inner = type(getattr(cls(), f.name))
            expected |= {(f.name, g.name) for g in dataclasses.fields(inner) if g.name != "tile"}
            for g in dataclasses.fields(inner):
                if g.name != "tile":
                    assert params[(f.name, g.name)].help == field_docs(inner)[g.name]
        elif f.name not in ("tile", "estimator") and not (m.trains and f.name == "seed"):
            expected.add((f.name,))
            assert params[(f.name,)].help == docs[f.name]
    assert set(params) == expected  # nothing from another method's config


def test_quantize_subcommands_build_the_registered_configs(capture_quantize, tmp_path):
    config, kw = capture_quantize("rtn", "ckpt", "-o", str(tmp_path / "q"), "--bits", "3", "--symmetric")
    assert config == method_named("rtn").config(bits=3, symmetric=True)
    config, kw = capture_quantize("trellis", "ckpt", "-o", str(tmp_path / "q"), "--L", "8", "--no-rht", "--seed", "5")
    assert config == method_named("trellis").config(L=8, rht=False) and kw["seed"] == 5  # --seed: calibration
    config, kw = capture_quantize("ste-qat", "ckpt", "-o", str(tmp_path / "q"), "--L", "10", "--steps", "3",
                                  "--layers", "blocks.0.*,lm", "--seed", "2", "--trellis-seed", "4")
    assert (config.estimator, config.steps, config.layers, config.seed) == ("ste", 3, ("blocks.0.*", "lm"), 2)
    assert (config.trellis.L, config.trellis.seed, config.trellis.k) == (10, 4, 2)
    config, _ = capture_quantize("trellis-ft", "ckpt", "-o", str(tmp_path / "q"), "--schedule", "cosine")
    assert config.trellis.real_signs and config.schedule == "cosine"


def test_old_method_flag_spelling_gives_the_same_config(capture_quantize, tmp_path):
    old = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method", "bcjr-qat", "--L", "8", "--qat-steps", "2",
                           "--qat-layers", "blocks.0.*", "--qat-seq-len", "32", "--calib-sequences", "4")
    new = capture_quantize("bcjr-qat", "ckpt", "-o", str(tmp_path / "q"), "--L", "8", "--steps", "2", "--layers",
                           "blocks.0.*", "--seq-len", "32", "--calib-sequences", "4")
    assert old == new
    old, _ = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method=gptq")
    assert old.bits == 2  # the old spelling's default bits for every method


def test_quantize_config_file_merges_under_flags(capture_quantize, tmp_path):
    qat = method_named("bcjr-qat").from_options("bcjr-qat", 2, {"L": 8}, {"steps": 7, "seed": 3})
    path = tmp_path / "q.json"
    path.write_text(json.dumps(config_to_dict(qat)))
    config, _ = capture_quantize("bcjr-qat", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path), "--lr", "0.001")
    want = dataclasses.replace(qat, lr=0.001)  # the file's L, steps and seed kept; the flag's lr wins
    assert json.dumps(config_to_dict(config)) == json.dumps(config_to_dict(want))
    r = runner.invoke(app, ["quantize", "rtn", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path)])
    assert isinstance(r.exception, ConfigError) and "not one of" in str(r.exception)


def _invoke_error(*args: str) -> str:
    """The one-line ConfigError (or other MechlabError) a command raises; fails on any other outcome."""
    r = runner.invoke(app, list(args))
    assert isinstance(r.exception, MechlabError), (r.exception, r.output)
    return str(r.exception)


def test_quantize_config_takes_a_config_object_or_a_whole_checkpoint_config_and_refuses_other_json(capture_quantize,
                                                                                                   tmp_path):
    rtn = method_named("rtn").config(bits=3, symmetric=True)
    whole = tmp_path / "config.json"  # a quantised checkpoint's config.json: the config under meta.quantization
    whole.write_text(json.dumps({"model": {"d_model": 8}, "meta": {"quantization": config_to_dict(rtn)}}))
    config, _ = capture_quantize("rtn", "ckpt", "-o", str(tmp_path / "q"), "--config", str(whole))
    assert config == rtn
    for bad in ({"format": "x", "layers": {}, "version": 1}, {"bits": 3}, {"model": {}, "meta": {}}, ["rtn"]):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        assert str(path) in _invoke_error("quantize", "rtn", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path))
    path.write_text(json.dumps({"method": "rtn", "bits": 3, "no_such_field": 1}))
    assert "no_such_field" in _invoke_error("quantize", "rtn", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path))
    help_text = runner.invoke(app, ["quantize", "rtn", "--help"], env={"COLUMNS": "200"}).output
    assert "meta.quantization" in help_text and "quantization.json" not in help_text


def test_a_qat_subcommand_fixes_the_estimator_even_with_a_config_file(capture_quantize, tmp_path):
    bcjr = method_named("bcjr-qat").from_options("bcjr-qat", 2, {"L": 8}, {"steps": 7})
    path = tmp_path / "bcjr.json"
    path.write_text(json.dumps(config_to_dict(bcjr)))
    assert "bcjr" in _invoke_error("quantize", "ste-qat", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path))
    d = config_to_dict(bcjr)
    d.pop("estimator")  # a file without the estimator: the subcommand's name gives it
    d["method"] = "ste-qat"
    path.write_text(json.dumps(d))
    config, _ = capture_quantize("ste-qat", "ckpt", "-o", str(tmp_path / "q"), "--config", str(path))
    assert (config.estimator, config.steps, config.trellis.L) == ("ste", 7, 8)


def test_old_spelling_takes_bits_from_the_flag_or_the_file_before_its_default(capture_quantize, tmp_path):
    path = tmp_path / "q3.json"
    path.write_text(json.dumps(config_to_dict(method_named("rtn").config(bits=3))))
    config, _ = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method", "rtn", "--config", str(path))
    assert config.bits == 3
    config, _ = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method", "rtn", "--config", str(path),
                                 "--bits", "4")
    assert config.bits == 4
    qat = config_to_dict(method_named("bcjr-qat").from_options("bcjr-qat", 3, {}, {}))  # bits nested: trellis.k
    path.write_text(json.dumps(qat))
    config, _ = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method", "bcjr-qat", "--config", str(path))
    assert config.trellis.k == 3
    config, _ = capture_quantize("ckpt", "-o", str(tmp_path / "q"), "--method", "rtn")
    assert config.bits == 2  # neither gives bits: the old spelling's default


@pytest.mark.parametrize("method,bad,field", [("rtn", {"bits": "4"}, "bits"), ("trellis", {"L": "x"}, "L"),
                                              ("rtn", {"symmetric": 1}, "symmetric"),
                                              ("bcjr-qat", {"trellis": 5}, "trellis"),
                                              ("bcjr-qat", {"trellis": {"L": "x"}}, "L"),
                                              ("bcjr-qat", {"layers": "blocks.0.*"}, "layers")])
def test_quantize_config_file_with_wrong_types_is_one_config_error(method, bad, field, tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"method": method, **bad}))
    message = _invoke_error("quantize", method, "ckpt", "-o", str(tmp_path / "q"), "--config", str(path))
    assert field in message and str(path) in message


def test_train_refuses_model_overrides_that_are_not_an_object(tmp_path):
    for bad in ("d_model=32", ["d_model"], {1: 2}):
        with pytest.raises(ConfigError, match="model_overrides"):
            TrainConfig(model_overrides=bad, out_dir=str(tmp_path / "r")).validate()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_overrides": "d_model=32", "out_dir": str(tmp_path / "r")}))
    assert "model_overrides" in _invoke_error("train", "--config", str(path))


@pytest.mark.parametrize("flags,message", [(("--calib-sequences", "0"), "--calib-sequences"),
                                           (("--calib-seq-len", "-3"), "--calib-seq-len"),
                                           (("--seed", "-1"), "--seed")])
@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_quantize_refuses_nonsense_calibration_options_for_every_method(method, flags, message, tmp_path):
    assert message in _invoke_error("quantize", method, "ckpt", "-o", str(tmp_path / "q"), *flags)


def test_quantize_checkpoint_checks_calibration_options_and_the_corpus_before_any_work(tmp_path):
    from mechlab.quant.run import quantize_checkpoint

    rtn = method_named("rtn").config(bits=4)
    for kwargs, message in (({"calib_sequences": 0}, "calib_sequences"), ({"calib_seq_len": 0}, "calib_seq_len"),
                            ({"seed": -1}, "seed"), ({"data": "no-such-corpus"}, "unknown corpus")):
        with pytest.raises(MechlabError, match=message):
            quantize_checkpoint(tmp_path / "missing", rtn, **kwargs)  # refused before the checkpoint is read


def test_train_refuses_an_output_that_is_a_file_or_empty(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    assert "is a file" in _invoke_error("train", "--out", str(f), "--steps", "1")
    assert f.read_text() == "mine"
    assert "out_dir" in _invoke_error("train", "--out", "", "--steps", "1")
    with pytest.raises(ConfigError, match="out_dir"):
        TrainConfig(out_dir="  ").validate()


def test_set_merges_key_by_key_over_the_config_files_model_overrides(capture_train, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model_overrides": {"d_model": 48, "n_layers": 2}, "out_dir": str(tmp_path / "r")}))
    cfg = capture_train("--config", str(path), "--set", "n_layers=3", "--set", "n_heads=4")
    assert cfg.model_overrides == {"d_model": 48, "n_layers": 3, "n_heads": 4}
    assert capture_train("--config", str(path)).model_overrides == {"d_model": 48, "n_layers": 2}
    assert "merged key by key" in params_by_field(command("train"))[("model_overrides",)].help


def test_quantize_and_import_refuse_to_replace_a_checkpoint_without_overwrite(tmp_path):
    from mechlab.checkpoint import check_output

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="--overwrite"):
        check_output(ck)
    assert check_output(ck, overwrite=True) == ck
    assert "--overwrite" in _invoke_error("quantize", "rtn", "missing-ckpt", "-o", str(ck))
    assert "--overwrite" in _invoke_error("import", "gguf", "missing.gguf", "-o", str(ck))
    # with --overwrite the output check passes and the (missing) source is what is reported
    assert "missing-ckpt" in _invoke_error("quantize", "rtn", "missing-ckpt", "-o", str(ck), "--overwrite")


def test_old_spelling_without_method_is_trellis_and_a_non_path_names_the_new_form(capture_quantize, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    config, _ = capture_quantize(str(ckpt), "-o", str(tmp_path / "q"), "--L", "8")
    assert config == method_named("trellis").config(L=8, k=2)
    message = _invoke_error("quantize", str(tmp_path / "nope"), "-o", str(tmp_path / "q"))
    assert "mechlab quantize METHOD CHECKPOINT" in message and "trellis" in message


def test_size_report_counts_the_buffers_a_stored_layer_declares_as_codes():
    import torch

    from mechlab.quant.linear import IntLinear, QuantizedLinear, TrellisLinear
    from mechlab.quant.run import size_report

    assert IntLinear.CODE_BUFFERS == ("qweight",) and TrellisLinear.CODE_BUFFERS == ("packed",)

    class Toy(QuantizedLinear):
        CODE_BUFFERS = ("indices",)

        def __init__(self):
            super().__init__(16, 4, bias=False)
            self.register_buffer("indices", torch.zeros(4, 8, dtype=torch.uint8))  # 32 bytes of codes
            self.register_buffer("codebook", torch.zeros(16, dtype=torch.float16))  # 32 bytes of side info

    model = torch.nn.Sequential(Toy())
    rep = size_report(model)
    assert rep["bytes"]["quantized codes"] == 32 and rep["bytes"]["quantized side info"] == 32
    assert rep["code_bits_per_quantized_weight"] == 8 * 32 / 64


def test_vocab_size_override_that_differs_from_the_tokenizer_is_refused(tmp_path):
    from mechlab.train.trainer import run_model_config

    cfg = TrainConfig(model="nano", model_overrides={"vocab_size": 10}, seq_len=32)
    with pytest.raises(ConfigError, match="vocab_size=10"):
        run_model_config(cfg, 259)
    assert run_model_config(TrainConfig(model="nano", model_overrides={"vocab_size": 259}), 259).vocab_size == 259
    message = _invoke_error("train", "--preset", "nano", "--data", "tinyshakespeare", "--seq-len", "32", "--steps",
                            "1", "--set", "vocab_size=10", "--out", str(tmp_path / "r"))
    assert "vocab_size=10" in message and not (tmp_path / "r").exists()


def test_huge_seq_len_is_refused_and_a_long_warmup_is_a_warning(caplog):
    with pytest.raises(ConfigError, match="65536"):
        TrainConfig(seq_len=100000).validate()
    TrainConfig(seq_len=65536).validate()
    with caplog.at_level("WARNING"):
        TrainConfig(steps=5, warmup_steps=10).validate()
    assert "warmup_steps = 10 exceeds steps = 5" in caplog.text


def test_help_names_arguments_in_capitals_and_flags_take_no_metavar():
    for args, usage in ((["quantize", "trellis", "--help"], "[OPTIONS] CHECKPOINT"), (["size", "--help"], "CHECKPOINT"),
                        (["train", "--help"], "[OPTIONS]")):
        out = runner.invoke(app, args, env={"COLUMNS": "200"}).output
        assert usage in out and "{checkpoint}" not in out and "<bool>" not in out, out
    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "None: write nothing" not in out and "library Task run" in out
    out = runner.invoke(app, ["quantize", "trellis", "--help"], env={"COLUMNS": "200"}).output
    assert "--rht" in out and "<int>" in out  # valued options keep their type; the flags show none


def test_outputs_never_replace_a_runs_checkpoints_or_a_foreign_file(tmp_path):
    from mechlab.checkpoint import check_output
    from mechlab.pretrained.export import check_hf_output, export_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "train_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="checkpoints of the training run"):
        check_output(run / "checkpoints" / "step-1", overwrite=True)
    assert check_output(run / "trellis-2bit") == run / "trellis-2bit"  # beside the run's checkpoints (the demo's)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output(blocker / "sub")
    with pytest.raises(ConfigError, match="is a file"):
        check_hf_output(blocker / "sub", overwrite=False)
    with pytest.raises(ConfigError, match="is a file"):
        export_checkpoint("missing-ckpt", blocker / "x.gguf")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        export_checkpoint("missing-ckpt", blocker, overwrite=True)
    assert blocker.read_text() == "x"


def test_claims_report_refuses_to_write_into_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "folder of its own" in _invoke_error("claims", "report", "-o", "", "--root", str(tmp_path))
    assert not (tmp_path / "index.html").exists()


def test_a_typed_number_the_config_overrides_is_refused():
    assert "--bits 4 conflicts" in _invoke_error("quantize", "gptq", "missing-ckpt", "--format", "q8_0", "--bits", "4",
                                                 "-o", "out-never-written")
    assert "--group-size 128 conflicts" in _invoke_error("quantize", "rtn", "missing-ckpt", "--format", "q4_0",
                                                         "--group-size", "128", "-o", "out-never-written")
    assert "missing-ckpt" in _invoke_error("quantize", "gptq", "missing-ckpt", "--format", "q4_0", "--bits", "4",
                                           "-o", "out-never-written")
