"""Perturbation probing of FFN neurons (Liu, Li, Wu, arXiv 2604.27401): hooks that read and edit a Transformer's
FFN activations and residual stream in its own forward pass, the two-pass importance score with the final-norm
correction, attribution patching, FFN-to-skip ratios, and interventions against matched random controls.
See docs/probe.md."""

from mechlab.probe.hooks import DecisionSet, Intervention, Trace, check_probeable, intervene, neuron_edit, record
from mechlab.probe.interventions import (
                                         controlled,
                                         empirical_p,
                                         evaluate_sets,
                                         inject_effect,
                                         matched_random,
                                         random_directions,
                                         residual_direction,
                                         top_neurons,
                                         wilson,
)
from mechlab.probe.prompts import (
                                         Decision,
                                         benign_requests,
                                         encode_pairs,
                                         harmbench_prompts,
                                         is_refusal,
                                         load_decision,
                                         render,
)
from mechlab.probe.score import ProbeResult, logit_direction, observable, probe, readout_direction, unembedding

__all__ = ["DecisionSet", "Intervention", "Trace", "check_probeable", "intervene", "neuron_edit", "record",
           "controlled", "empirical_p", "evaluate_sets", "inject_effect", "matched_random", "random_directions",
           "residual_direction", "top_neurons", "wilson", "Decision", "benign_requests", "encode_pairs",
           "harmbench_prompts", "is_refusal", "load_decision", "render", "ProbeResult", "logit_direction",
           "observable", "probe", "readout_direction", "unembedding"]
