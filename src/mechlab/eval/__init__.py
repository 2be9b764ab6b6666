"""Evaluation: bits-per-byte and perplexity (one entry point, :func:`evaluate_lm`)."""

from mechlab.eval.lm import EvalResult, evaluate_lm, windows

__all__ = ["EvalResult", "evaluate_lm", "windows"]
