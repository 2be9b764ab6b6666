"""The CLI generated from the config dataclasses (mechlab.cli_config): field docstrings as the only help text,
config files merged under explicit flags, one quantize subcommand per registered method."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from mechlab.cli import app, generated_command
from mechlab.cli_config import config_options, field_docs, merged
from mechlab.errors import ConfigError
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
