"""Learning mechanics: observables measured on models during and after training, and scaling-law fits."""

from mechlab.mechanics.observables import (
    adam_preconditioner,
    adam_threshold,
    effective_rank,
    hidden_state_dimension,
    hidden_states,
    layer_statistics,
    loop_observables,
    loss_steps,
    preconditioned_sharpness,
    snapshot_matrices,
    top_hessian_eigenvalue,
)

__all__ = ["adam_preconditioner", "adam_threshold", "effective_rank", "hidden_state_dimension", "hidden_states",
           "layer_statistics", "loop_observables",
           "loss_steps", "preconditioned_sharpness", "snapshot_matrices", "top_hessian_eigenvalue"]
