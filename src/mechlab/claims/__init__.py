"""Claims: the seed papers' claims as data, the experiments that check them, and measured verdict pages."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mechlab.claims.registry import CLAIMS, PAPERS, Claim, Measurement, Paper, claim
from mechlab.claims.report import render_report
from mechlab.errors import ConfigError


def run_claim(name: str, root: str | Path = ".") -> Measurement:
    """Run the experiment of claim ``name`` (its command, in ``root``) and return the measured verdict."""
    try:
        c = claim(name)
    except KeyError:
        raise ConfigError(f"unknown claim {name!r}; see `mechlab claims list`") from None
    if not c.command:
        raise ConfigError(f"claim {name!r} has no experiment yet")
    subprocess.run(c.command, shell=True, cwd=root, check=True)
    return c.measure(Path(root))


__all__ = ["CLAIMS", "PAPERS", "Claim", "Measurement", "Paper", "claim", "render_report", "run_claim"]
