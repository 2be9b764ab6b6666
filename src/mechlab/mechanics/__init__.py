"""Learning mechanics: observables measured on models during and after training."""

from mechlab.mechanics.observables import loop_observables

__all__ = ["loop_observables"]
