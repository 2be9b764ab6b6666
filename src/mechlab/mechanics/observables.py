"""Observables of looped models (papers/hyperloop.md).

* Cross-loop cosine similarity: for consecutive loops l, l+1, the cosine between the middle block's outputs at
  the same token, averaged over tokens (the quantity of the paper's Table 8; near 1 means later loops repeat
  earlier ones, lower means each loop still changes the representation).
* Per-loop logit lens: the residual state after loop l (streams averaged for Hyperloop) sent straight through the
  final norm and the LM head, skipping the remaining loops and the end blocks; its cross-entropy against the
  targets in nats. A loss that falls loop by loop says each loop brings the state closer to a prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def loop_observables(model, idx: torch.Tensor, targets: torch.Tensor) -> dict[str, list[float]]:
    """``{"loop_cos": [L-1 floats], "lens_loss": [L floats]}`` for a looped model on one batch; ``{}`` otherwise."""
    if not model.config.is_looped:
        return {}
    was_training = model.training
    model.eval()
    T = idx.shape[1]
    trace: dict = {}
    model.body(model.embed(idx), model.rope_cos[:T], model.rope_sin[:T], trace=trace)
    model.train(was_training)
    middle = [h.float() for h in trace["middle"]]
    cos = [float(F.cosine_similarity(a, b, dim=-1).mean()) for a, b in zip(middle, middle[1:])]
    lens = [float(F.cross_entropy(model.head(h).float().flatten(0, 1), targets.reshape(-1))) for h in trace["after_loop"]]
    return {"loop_cos": cos, "lens_loss": lens}
