import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mechlab.errors import CheckpointError, ConfigError, TrainingDiverged
from mechlab.train import TrainConfig, load_checkpoint, lr_at, train
from mechlab.train.trainer import batch_offsets, make_optimizer


def cfg(tmp_path: Path, name: str = "run", **kw) -> TrainConfig:
    base = dict(model="nano", data="tinyshakespeare", tokenizer="byte", seq_len=64, batch_size=8, steps=12,
                lr=3e-3, warmup_steps=3, eval_every=6, eval_windows=4, log_every=2, save_every=4, out_dir=str(tmp_path / name))
    return TrainConfig(**{**base, **kw})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(run) / (Path(run) / "latest").read_text().strip() / "model.safetensors")


def test_lr_schedule_warmup_then_cosine():
    c = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    exact = dict(rel=8 * 2.0**-53, abs=8 * 2.0**-53)  # float64 closed forms (cos(π/2) = 6e-17, not 0): a few ulps
    assert lr_at(0, c) == pytest.approx(0.1, **exact) and lr_at(9, c) == pytest.approx(1.0, **exact)
    assert lr_at(10, c) == pytest.approx(1.0, **exact) and lr_at(100, c) == pytest.approx(0.1, **exact)
    assert lr_at(55, c) == pytest.approx(0.55, **exact)
    assert all(lr_at(s, c) >= lr_at(s + 1, c) for s in range(10, 100))


def test_weight_decay_only_on_matrices():
    from mechlab.models import build_model, preset

    m = build_model(preset("nano"))
    opt = make_optimizer(m, TrainConfig())
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])


def test_data_order_depends_only_on_seed_and_step():
    a = batch_offsets(0, 5, 8, 10_000, 64)
    assert (a == batch_offsets(0, 5, 8, 10_000, 64)).all() and not (a == batch_offsets(0, 6, 8, 10_000, 64)).all()


def test_training_learns_logs_and_checkpoints(tmp_path):
    r = train(cfg(tmp_path, steps=30, eval_every=15), progress=False)
    assert r.final_eval.bits_per_byte < r.initial_eval.bits_per_byte - 1.0  # a training outcome, not roundoff
    recs = [json.loads(line) for line in (r.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(recs[1]) and recs[-1]["val_bpb"] == r.final_eval.bits_per_byte
    steps = sorted(p.name for p in (r.out_dir / "checkpoints").iterdir())
    assert steps == ["step-0000028", "step-0000030"]  # keep_checkpoints=2
    ckpt = load_checkpoint(r.out_dir)
    assert ckpt.meta["step"] == 30
    x = torch.randint(0, 259, (1, 10))
    assert torch.equal(ckpt.model(x)[0], r.model(x)[0])


def test_observables_are_logged_at_their_cadence(tmp_path):
    r = train(cfg(tmp_path, steps=6, eval_every=6, observe_every=3, hessian_every=6, hessian_iters=3), progress=False)
    recs = [json.loads(line) for line in (r.out_dir / "metrics.jsonl").read_text().splitlines()]
    layers = [x for x in recs if "layers" in x]
    assert [x["step"] for x in layers] == [3, 6]
    q = layers[0]["layers"]["blocks.0.attn.q.weight"]
    assert q["w_norm"] > 0 and 1 <= q["eff_rank"] <= 64 and 0 < q["update_ratio"] < 1
    hess = [x for x in recs if "hessian_top" in x]
    assert len(hess) == 1 and hess[0]["step"] == 6 and hess[0]["hessian_top"] > 0 and hess[0]["two_over_lr"] > 0


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = train(cfg(tmp_path, "full"), progress=False)
    part = cfg(tmp_path, "part")
    train(part, progress=False, stop_after=5)  # interrupted after step 5; last checkpoint at step 5
    with pytest.raises(ConfigError, match="--resume"):
        train(part, progress=False)
    train(part, resume=True, progress=False)
    a, b = weights(full.out_dir), weights(part.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line)["step"] for line in (Path(part.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert log == sorted(log)


def _mechlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "mechlab", *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


TRAIN_ARGS = ["train", "--preset", "nano", "--data", "tinyshakespeare", "--seq-len", "64", "--batch-size", "8",
              "--steps", "60", "--warmup", "5", "--eval-every", "1000", "--save-every", "10"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    ref = subprocess.run(_mechlab(*TRAIN_ARGS, "--out", str(tmp_path / "ref")), env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    p = subprocess.Popen(_mechlab(*TRAIN_ARGS, "--out", str(run)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step-0000020").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "checkpoints" / "step-0000060").exists()
    res = subprocess.run(_mechlab("train", "--out", str(run), "--resume"), env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a, b = weights(tmp_path / "ref"), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["nano", "mhc-tiny", "looped-tiny", "hyperloop-tiny"])
def test_two_process_data_parallel_matches_one_process(preset, tmp_path):
    args = ["--preset", preset, "--data", "tinyshakespeare", "--seq-len", "64", "--batch-size", "8",
            "--steps", "6", "--warmup", "2", "--eval-every", "1000", "--save-every", "6"]
    one = subprocess.run(_mechlab("train", *args, "--micro-batch-size", "4", "--out", str(tmp_path / "one")),
                         env=_env(), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "mechlab", "train", *args, "--out", str(tmp_path / "two")],
                         env=_env(), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    # bitwise: each micro-batch's gradient is the same computation in both (same shapes, one thread), the loss is
    # scaled by 1/2 (exact) and two gradients are added (a + b = b + a exactly), so every AdamW step is the same
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_is_a_clear_error(tmp_path, monkeypatch):
    import mechlab.train.trainer as trainer

    real = trainer.build_model

    def poisoned(c):
        m = real(c)
        with torch.no_grad():
            m.embed.weight[5] = float("nan")
        return m

    monkeypatch.setattr(trainer, "build_model", poisoned)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 0"):
        train(cfg(tmp_path, eval_windows=1), progress=False)
    assert not (tmp_path / "run" / "latest").exists()


def test_bad_train_configs(tmp_path):
    for bad in (dict(steps=0), dict(lr=-1.0), dict(dtype="float8"), dict(batch_size=6, micro_batch_size=4)):
        with pytest.raises(ConfigError):
            train(cfg(tmp_path, **bad), progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(cfg(tmp_path, "empty"), resume=True, progress=False)


def test_bf16_autocast_and_gradient_accumulation_run(tmp_path):
    r = train(cfg(tmp_path, steps=4, dtype="bfloat16", micro_batch_size=4), progress=False)
    assert r.step == 4 and r.final_eval.bits_per_byte < 9  # finite and below a uniform byte model's 8 + slack


def test_truncated_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    r = train(cfg(tmp_path, steps=4), progress=False)
    ckpt = Path(r.out_dir) / (Path(r.out_dir) / "latest").read_text().strip()
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(r.out_dir)
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(r.out_dir, verify=False)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_resume_with_changed_flags_applies_the_allowed_and_refuses_the_rest(tmp_path):
    run = tmp_path / "r"
    base = ["train", "--preset", "nano", "--data", "tinyshakespeare", "--seq-len", "32", "--batch-size", "4",
            "--steps", "4", "--warmup", "1", "--eval-every", "1000", "--save-every", "2", "--out", str(run)]
    assert subprocess.run(_mechlab(*base), capture_output=True, env=_env()).returncode == 0
    r = subprocess.run(_mechlab("train", "--out", str(run), "--resume", "--steps", "6", "--lr", "0.01"),
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert "steps 4 -> 6" in r.stderr and "lr 0.003 -> 0.01" in r.stderr  # the changes are logged
    saved = json.loads((run / "train_config.json").read_text())
    assert (saved["steps"], saved["lr"]) == (6, 0.01) and (run / "latest").read_text().strip().endswith("6")
    for flags, message in ((["--seed", "3"], "seed (0 -> 3)"), (["--seq-len", "64", "--steps", "9"], "seq_len"),
                           (["--steps", "5"], "nothing to train")):
        r = subprocess.run(_mechlab("train", "--out", str(run), "--resume", *flags), capture_output=True, text=True,
                           env=_env())
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (flags, r.stderr)
    assert json.loads((run / "train_config.json").read_text()) == saved  # a refused resume changes nothing


def test_a_copied_run_resumes_where_it_is_and_outputs_never_replace_a_run(tmp_path):
    import shutil

    from mechlab.train.checkpoint import check_output

    run = tmp_path / "r"
    base = ["train", "--preset", "nano", "--data", "tinyshakespeare", "--seq-len", "32", "--batch-size", "4",
            "--steps", "2", "--warmup", "1", "--eval-every", "1000", "--save-every", "2", "--out", str(run)]
    assert subprocess.run(_mechlab(*base), capture_output=True, env=_env()).returncode == 0
    shutil.copytree(run, tmp_path / "copy")
    r = subprocess.run(_mechlab("train", "--out", str(tmp_path / "copy"), "--resume", "--steps", "4"),
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert (run / "latest").read_text().strip().endswith("2")  # the original is untouched
    assert (tmp_path / "copy" / "latest").read_text().strip().endswith("4")
    records = [json.loads(x) for x in (tmp_path / "copy" / "resumes.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2 and records[-1]["changes"]["steps"] == [2, 4]
    r = subprocess.run(_mechlab("train", "--out", str(run), "--resume", "--overwrite"), capture_output=True, text=True,
                       env=_env())
    assert r.returncode == 2 and "give one of them" in r.stderr
    for target, message in ((run, "holds a training run"), (run / "train_config.json", "is a file")):
        with pytest.raises(ConfigError, match=message):
            check_output(target)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files"):
        check_output(tmp_path / "other")
    r = subprocess.run(_mechlab("quantize", str(run), "--method", "rtn", "--bits", "4", "-o", str(tmp_path / "copy")),
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and (tmp_path / "copy" / "train_config.json").exists()
    r = subprocess.run(_mechlab("quantize", str(run), "--method", "gptq", "--bits", "4", "--data", "wikitext2-valid",
                                "--calib-sequences", "2", "--calib-seq-len", "32", "-o", str(tmp_path / "q")),
                       capture_output=True, text=True, env=_env())  # an evaluation-only corpus calibrates on its split
    assert r.returncode == 0, r.stderr
