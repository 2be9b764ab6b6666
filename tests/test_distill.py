"""Distillation through the one training loop (mechlab.train.distill), the Task hooks it uses (loss, parameter
groups, step hooks, eval mode, no files), the shared batching module and the checkpoint module's old path."""

import copy
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mechlab.data.batches import batch_offsets, get_batch, window_batches
from mechlab.errors import ConfigError, TrainingDiverged
from mechlab.models import build_model, preset
from mechlab.train import TrainConfig, lr_at, train
from mechlab.train.distill import distill, distill_config, kl_teacher_student, lr_factor
from mechlab.train.trainer import Task

U64 = 2.0**-53


def models(seed=0):
    """A float teacher and a student: the teacher with its matrices perturbed, so the KL starts above 0."""
    torch.manual_seed(seed)
    teacher = build_model(preset("nano", vocab_size=48, max_seq_len=64)).eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dim() == 2:
                p.add_(0.3 * torch.randn_like(p) * p.std())
    return teacher, student


def stream(n=3000, seed=0):
    return SimpleNamespace(ids=np.random.default_rng(seed).integers(0, 48, n))


def gains(model):
    return [p for m in model.modules() if type(m).__name__.endswith("Norm") for p in m.parameters(recurse=False)]


def reference_distill(model, teacher, groups, ids, steps, lr, batch_size, seq_len, seed, schedule):
    """The loop QAT and fine-tuning ran before they went through the trainer: Adam on the groups' parameters,
    LambdaLR with the constant or cosine factor, KL(teacher ‖ student) on the trainer's windows, eval mode."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for g in groups for p in g["params"]]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(schedule, s, steps))
    model.eval()
    kls = []
    for step in range(steps):
        x, _ = get_batch(ids, batch_offsets(seed, step, batch_size, len(ids), seq_len), seq_len)
        with torch.no_grad():
            t_logits, _ = teacher(x)
        loss = kl_teacher_student(t_logits, model(x)[0])
        kls.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    for p in model.parameters():
        p.requires_grad_(True)
    return kls


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_distillation_through_the_trainer_is_the_reference_adam_loop(schedule):
    teacher, a = models()
    b = copy.deepcopy(a)
    s = stream()
    kw = dict(steps=5, lr=3e-3, batch_size=4, seq_len=16, seed=7, schedule=schedule)

    def groups(m):  # a matrix and the norm gains at lr, the token embedding at its own rate
        return [{"params": [m.blocks[0].mlp.up.weight] + gains(m)}, {"params": [m.embed.weight], "lr": 1e-3}]

    records = distill(a, teacher, groups(a), s, **kw, progress=False)
    ref = reference_distill(b, teacher, groups(b), s.ids, **kw)
    # the same float operations in the same order: AdamW at weight decay 0 is Adam's update, the schedule
    # factor (1 or (1 + cos)/2, a halving) times the peak rate is lr_at's value exactly, and clipping at an
    # infinite norm multiplies by 1. So equal to the last bit, on any CPU
    assert [r["kl"] for r in records] == ref and [r["step"] for r in records] == list(range(5))
    assert ref[-1] < ref[0]  # it trains (a training outcome, not roundoff)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_distillation_freezes_the_rest_and_restores_flags_mode_and_rng():
    teacher, m = models(1)
    m.train()
    m.blocks[1].attn.q.weight.requires_grad_(False)  # a flag the caller set stays as it was
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    rng = torch.get_rng_state()
    trained = m.blocks[0].attn.o.weight
    records = distill(m, teacher, [trained], stream(), steps=3, lr=1e-2, batch_size=4, seq_len=16,
                      before_step=lambda step: {"t": 0.5 * step}, progress=False)
    assert [r["t"] for r in records] == [0.0, 0.5, 1.0]  # before_step's dict joins the step's record
    assert torch.equal(torch.get_rng_state(), rng)  # the trainer's seeding did not leak into the caller
    assert m.training  # the model ran in eval mode and is back in train mode
    changed = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
    assert changed == ["blocks.0.attn.o.weight"]
    flags = {n: p.requires_grad for n, p in m.named_parameters()}
    assert not flags.pop("blocks.1.attn.q.weight") and all(flags.values())
    assert distill(m, teacher, [trained], stream(), steps=0, lr=1e-2, batch_size=4, seq_len=16) == []


def test_a_task_loss_hooks_and_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, m = models(2)
    calls, logs = [], []

    def loss(model, x, y):  # next-token cross-entropy through the hook: the model's own loss
        return model(x, y)[1]

    task = Task(build_model=lambda: m, batch=window_batches(stream().ids, 16), loss=loss,
                param_groups=lambda model: [{"params": gains(model)}],
                before_step=lambda s: calls.append(("before", s)) or {}, after_step=lambda s: calls.append(("after", s)),
                device="cpu")
    cfg = TrainConfig(steps=3, lr=1e-2, warmup_steps=0, batch_size=4, seq_len=16, log_every=1, eval_every=3,
                      out_dir=None)
    r = train(cfg, progress=False, on_log=logs.append, task=task)
    assert calls == [("before", 0), ("after", 0), ("before", 1), ("after", 1), ("before", 2), ("after", 2)]
    assert [rec["step"] for rec in logs] == [1, 2, 3] and r.out_dir is None
    assert list(tmp_path.iterdir()) == []  # out_dir None: nothing written
    with pytest.raises(ConfigError, match="out_dir"):
        train(replace(cfg, out_dir=None), progress=False)  # a language-model run needs its run directory


def test_a_diverging_distillation_raises_and_restores_the_flags():
    teacher, m = models(3)

    def nan_after_one(step):
        if step == 1:
            with torch.no_grad():
                teacher.embed.weight.fill_(float("nan"))
        return {}

    with pytest.raises(TrainingDiverged, match="step 1"):
        distill(m, teacher, gains(m), stream(), steps=3, lr=1e-2, batch_size=4, seq_len=16,
                before_step=nan_after_one, progress=False)
    assert all(p.requires_grad for p in m.parameters())


def test_group_peak_rates_follow_the_schedule():
    c = TrainConfig(steps=40, warmup_steps=5, lr=2e-3, min_lr_ratio=0.1)
    for s in (0, 4, 5, 20, 39, 40):
        assert lr_at(s, c, 5e-4) == lr_at(s, replace(c, lr=5e-4))  # the same expression: equal exactly
    cos = distill_config(steps=4, lr=1.0, batch_size=1, seq_len=2, schedule="cosine")
    # the float64 closed form (1 + cos(πs/4))/2: a few ulps
    assert [lr_at(s, cos) for s in range(5)] == pytest.approx([1, 0.5 + 0.5**1.5, 0.5, 0.5 - 0.5**1.5, 0],
                                                              abs=4 * U64)
    with pytest.raises(ConfigError, match="lr > 0"):
        distill_config(steps=4, lr=0.0, batch_size=1, seq_len=2)


def test_window_batches_are_the_trainers_windows():
    ids = np.arange(500)
    x, y = window_batches(ids, 8)(3, 11, 5)
    ex, ey = get_batch(ids, batch_offsets(3, 11, 5, 500, 8), 8)
    assert torch.equal(x, ex) and torch.equal(y, ey) and x.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:])  # targets are the inputs shifted by one


def test_checkpoints_keep_their_old_import_path():
    import mechlab.checkpoint as new
    import mechlab.train.checkpoint as old

    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name)
