"""Sequential calibration: quantise block by block, each layer calibrated on the inputs it will really see.

:func:`~mechlab.quant.quantize_` by default takes every layer's Hessian H = E[x xᵀ] from the float model in one
pass, so a layer is fitted to inputs that the quantised model no longer produces once the layers before it are
quantised. Here the blocks are walked in order with the calibration activations cached at the current block's
input, two streams side by side: ``x_f`` through the float blocks and ``x_q`` through the already-quantised ones.
Within a block, the layers are taken group by group in call order (q/k/v read one tensor and form a group, then o,
then gate/up, then down), each group calibrated after the groups before it were quantised:

- the Hessian is the quantised stream's, H = E[x_q x_qᵀ] (GPTQ's sequential order);
- ``asymmetric``: the target is the float layer's output on the float stream, min ‖W x_f − Ŵ x_q‖², whose
  minimiser over all matrices is W' = W E[x_f x_qᵀ] H⁻¹ = W + W (E[x_f x_qᵀ] − H) H⁻¹. So the layer is coded
  towards W' with Hessian H (H damped by ``damp``·mean diag in the correction only, so W' = W exactly where the
  two streams agree, as for the first block's first group). The codes then also undo the drift that the layers
  before them put into their inputs.

Works on models whose ``blocks`` (an nn.ModuleList) each run once per forward, in order, with the hidden state as
their first argument (the plain Transformer; a looped or mHC model raises a ConfigError). Cost: one float pass of
each block, and for each group a pass of the quantised block that stops at the group's input.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from mechlab.errors import ConfigError


class _Stop(Exception):
    """Ends a forward pass once the input wanted has been seen."""


def _blocks(model: nn.Module, batches: list[torch.Tensor]) -> tuple[str, nn.ModuleList]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        raise ConfigError("sequential calibration needs a model with its blocks in an nn.ModuleList `blocks`")
    calls = [0] * len(blocks)
    hooks = [b.register_forward_pre_hook(lambda _m, _a, i=i: calls.__setitem__(i, calls[i] + 1)) for i, b in
             enumerate(blocks)]
    try:
        model(batches[0][:1, :2])
    finally:
        for h in hooks:
            h.remove()
    if calls != [1] * len(blocks):
        raise ConfigError(f"sequential calibration needs every block run once per forward, in order; calls per block: "
                          f"{calls} (a looped or mHC model)")
    return next(n for n, m in model.named_modules() if m is blocks), blocks


def _first_block_inputs(model: nn.Module, block: nn.Module, batches: list[torch.Tensor]) -> list[tuple]:
    """The positional arguments of the first block's call for each batch (the model run up to it, no further)."""
    seen = []

    def grab(_m, args):
        seen.append(args)
        raise _Stop

    hook = block.register_forward_pre_hook(grab)
    try:
        for batch in batches:
            try:
                model(batch)
            except _Stop:
                pass
    finally:
        hook.remove()
    return seen


def _inputs(block: nn.Module, names: Iterable[str], args: tuple, group_of: str | None = None) -> dict[str, torch.Tensor]:
    """The input of each named Linear of ``block`` in one call ``block(*args)``, in call order; with ``group_of``,
    the call stops at the first layer after it whose input is another tensor (the group reading its input)."""
    got = {}

    def hook(name):
        def fn(_m, a):
            if group_of in got and a[0] is not got[group_of]:
                raise _Stop
            got.setdefault(name, a[0])
        return fn

    hooks = [block.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        block(*args)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    return got


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(-1, x.shape[-1]).float()


@torch.no_grad()
def sequential_calibration(model: nn.Module, batches: list[torch.Tensor], names: Iterable[str],
                           asymmetric: bool = True, damp: float = 0.01,
                           progress: bool = False) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """Yield ``(name, target weight, Hessian)`` (float32, float64) for every listed Linear, in forward order.

    The caller must quantise the yielded layer in place (replace the module) before asking for the next one: the
    following groups are calibrated on the model as it is then. Every listed layer must lie inside a block."""
    was_training = model.training
    model.eval()
    try:
        prefix, blocks = _blocks(model, batches)
        names = list(names)
        per_block: list[list[str]] = [[] for _ in blocks]
        for n in names:
            head, _, tail = n.partition(f"{prefix}.")
            index, _, local = tail.partition(".")
            if head or not index.isdigit() or not local:
                raise ConfigError(f"sequential calibration: layer {n} lies outside the blocks ({prefix}.*)")
            per_block[int(index)].append(local)
        first_args = _first_block_inputs(model, blocks[0], batches)
        xq, rest = [a[0] for a in first_args], [a[1:] for a in first_args]
        xf = list(xq)
        for i in tqdm(range(len(blocks)), desc="sequential calibration", unit="block", disable=not progress,
                      leave=False):
            block = blocks[i]
            float_block = copy.deepcopy(block)
            pending = list(_inputs(block, per_block[i], (xq[0], *rest[0])))  # call order
            if len(pending) != len(per_block[i]):
                missing = sorted(set(per_block[i]) - set(pending))
                raise ConfigError(f"sequential calibration: block {i} never calls {', '.join(missing)}")
            x_float = [_inputs(float_block, pending, (x, *r)) for x, r in zip(xf, rest)] if asymmetric else None
            while pending:
                first = pending[0]
                seen = [_inputs(block, pending, (x, *r), group_of=first) for x, r in zip(xq, rest)]
                group = [n for n in pending if n in seen[0] and seen[0][n] is seen[0][first]]
                rows = [_rows(s[first]) for s in seen]  # each batch's group input, flattened once
                count = sum(x.shape[0] for x in rows)
                h = sum((x.T @ x).double() for x in rows) / count
                correction = None
                if asymmetric:
                    cross = sum((_rows(f[first]).T @ x).double() for f, x in zip(x_float, rows)) / count
                    eye = torch.eye(h.shape[0], dtype=h.dtype)
                    # W' = W + W (E[x_f x_qᵀ] − H)(H + λI)⁻¹, with H symmetric: solve from the right
                    correction = torch.linalg.solve(h + damp * h.diagonal().mean() * eye, (cross - h).T).T
                del seen, rows
                for local in group:
                    w = block.get_submodule(local).weight.detach().float().cpu()
                    if correction is not None:
                        w = (w.double() + w.double() @ correction).float()
                    yield f"{prefix}.{i}.{local}", w, h
                    pending.remove(local)
            xq = [block(x, *r) for x, r in zip(xq, rest)]
            if asymmetric:
                xf = [float_block(x, *r) for x, r in zip(xf, rest)]
            del float_block, x_float
    finally:
        model.train(was_training)


__all__ = ["sequential_calibration"]
