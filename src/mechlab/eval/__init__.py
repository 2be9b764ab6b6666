"""Evaluation: bits-per-byte and perplexity (one entry point, :func:`evaluate_lm`)."""

from mechlab.eval.lm import EvalResult, evaluate_lm, windows
from mechlab.eval.profile import decode_profile

__all__ = ["EvalResult", "decode_profile", "evaluate_lm", "windows"]
