import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mechlab.cli import app

runner = CliRunner()
COMMANDS = ["demo", "train", "eval", "generate", "sample", "chat", "corpora", "presets", "params", "quantize",
            "quantize rtn", "quantize gptq", "quantize trellis", "quantize bcjr-qat", "quantize ste-qat",
            "quantize trellis-ft", "size",
            "sweep", "claims", "claims list", "claims run", "claims report", "import", "import gguf", "import hf",
            "delegate", "delegate run", "delegate report", "probe", "probe run"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command):
    r = runner.invoke(app, (command.split() if command else []) + ["--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mechlab", *args], capture_output=True, text=True)


def test_listings():
    assert "gutenberg" in runner.invoke(app, ["corpora"]).output
    assert "smollm2-135m" in runner.invoke(app, ["presets"]).output
    r = runner.invoke(app, ["params", "hyperloop-paper-large", "--json"])
    assert r.exit_code == 0 and '"params": 990' in r.output


@pytest.mark.slow
def test_demo_train_eval_sample_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "--steps", "6", "--out", str(out), "--quant-L", "8")
    assert r.returncode == 0, r.stderr
    assert "validation bits/byte: before" in r.stdout and "sample" in r.stdout
    assert "2-bit trellis PTQ" in r.stdout and (out / "trellis-2bit" / "quantization.json").is_file()
    page = (out / "claims" / "bcjr-qat.html").read_text()  # the demo ends on the verdict page of what it measured
    assert "claim pages" in r.stdout and "cost the demo model little" in page and "model bytes, quantised / float" in page
    assert json.loads((out / "demo_results.json").read_text())["L"] == 8
    r = run("size", str(out / "trellis-2bit"), "--json")
    assert r.returncode == 0, r.stderr
    size = json.loads(r.stdout)
    assert size["code_bits_per_quantized_weight"] == 2.0 and size["bytes"]["float linear"] == 0
    r = run("quantize", "gptq", str(out), "--act-order", "--bits", "4", "-o", str(tmp_path / "gptq4"),
            "--calib-sequences", "4", "--sequential")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "gptq4" / "config.json").read_text())["meta"]["sequential_calibration"] is True
    r = run("eval", str(tmp_path / "gptq4"), "--data", "stdlib", "--context", "64", "--max-windows", "2", "--json")
    assert r.returncode == 0, r.stderr
    r = run("quantize", "bcjr-qat", str(out), "--L", "8", "--steps", "2", "--seq-len", "32", "--batch-size", "2",
            "--layers", "blocks.0.*", "--calib-sequences", "4", "-o", str(tmp_path / "qat"))
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())  # rich wraps long lines
    assert "bcjr-qat: 2 steps on 7 layers" in said and "% of codes changed" in said
    r = run("size", str(tmp_path / "qat"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["code_bits_per_quantized_weight"] == 2.0
    # the spelling before quantize had subcommands (--method, --qat-*) still works
    r = run("quantize", str(out), "--method", "trellis-ft", "--L", "8", "--qat-steps", "2", "--qat-seq-len", "32",
            "--qat-batch-size", "2", "--lr-schedule", "cosine", "--embedding-lr", "1e-4", "--calib-sequences", "4",
            "-o", str(tmp_path / "ft"))
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert "trellis-ft: 2 steps on" in said and "codes frozen" in said
    r = run("size", str(tmp_path / "ft"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["code_bits_per_quantized_weight"] == 2.0
    r = run("quantize", str(out), "--method", "rtn", "--bits", "4", "--embedding", "-o", str(tmp_path / "rtn-all"))
    assert r.returncode == 0, r.stderr
    assert "embeddings" in json.loads((tmp_path / "rtn-all" / "quantization.json").read_text())
    r = run("size", str(tmp_path / "rtn-all"))
    said = " ".join(r.stdout.split())
    assert r.returncode == 0 and "whole file:" in said and "bits per parameter over all" in said
    r = run("quantize", str(tmp_path / "gptq4"), "--method", "rtn", "-o", str(tmp_path / "again"))
    assert r.returncode == 2 and "already quantised" in r.stderr
    assert (out / "loss.png").stat().st_size > 1000 and (out / "latest").is_file()
    r = run("eval", str(out), "--data", "tinyshakespeare", "--context", "128", "--max-windows", "3", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n_windows"] == 3 and res["n_tokens"] == 3 * 127 and 0 < res["bits_per_byte"] < 9
    r = run("generate", str(out), "--prompt", "import ", "--max-new-tokens", "20")
    assert r.returncode == 0 and r.stdout.startswith("import ")


@pytest.mark.parametrize("args,message", [
    (["train", "--preset", "nope"], "unknown model preset"),
    (["train", "--lr", "-1"], "lr must be"),
    (["quantize", "x", "-o", "y", "--method", "trellis", "--qat-steps", "3"], "only apply to"),
    (["quantize", "x", "-o", "y", "--method", "trellis-ft", "--t-start", "0.2"], "takes no QAT setting"),
    (["quantize", "x", "-o", "y", "--method", "bcjr-qat", "--embedding-lr", "1e-4"], "takes no fine-tuning setting"),
    (["quantize", "trellis", "x", "-o", "y", "--steps", "3"], "No such option: --steps"),
    (["quantize", "rtn", "x", "-o", "y", "--L", "8"], "No such option: --L"),
    (["quantize", "x", "-o", "y", "--method", "nope"], "unknown method 'nope'"),
    (["train", "--data", "no-such-corpus"], "unknown corpus"),
    (["eval", "/no/such/checkpoint"], "does not exist"),
    (["train", "--resume"], "no train_config.json"),
])
def test_user_errors_exit_nonzero_with_a_message(args, message, tmp_path):
    if "--resume" in args or args[0] == "train":
        args = [*args, "--out", str(tmp_path / "r")]
    r = run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "latest").exists()
