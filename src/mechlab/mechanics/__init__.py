"""Learning mechanics: observables measured on models during and after training, and scaling-law fits."""

from mechlab.mechanics.observables import (
    effective_rank,
    layer_statistics,
    loop_observables,
    loss_steps,
    snapshot_matrices,
    top_hessian_eigenvalue,
)

__all__ = ["effective_rank", "layer_statistics", "loop_observables", "loss_steps", "snapshot_matrices",
           "top_hessian_eigenvalue"]
