"""The domain interface and the matching helpers every structural similarity shares."""

from __future__ import annotations

import random
from typing import Any

Files = dict[str, str]


class Domain:
    name = ""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def check(self, filename: str, text: str) -> str | None:
        """None when the document parses, else the parser's complaint."""
        try:
            self.parse(text)
        except Exception as e:  # each parser raises its own error types
            return f"does not parse as {self.name}: {e}"
        return None

    def file_similarity(self, seed: Any, got: Any) -> float:
        raise NotImplementedError

    def similarity(self, seed: Files, got: Files) -> float:
        scores = []
        for name, text in seed.items():
            if name not in got:
                scores.append(0.0)
                continue
            try:
                scores.append(self.file_similarity(self.parse(text), self.parse(got[name])))
            except Exception:  # an answer that no longer parses scores 0 for that file
                scores.append(0.0)
        return sum(scores) / len(scores)

    def apply(self, op: dict, files: Files) -> Files:
        raise NotImplementedError

    def invert(self, op: dict) -> dict:
        raise NotImplementedError

    def corrupt(self, files: Files, rng: random.Random) -> Files:
        raise NotImplementedError


def _best_matching(score) -> dict[int, int]:
    """Seed item → answer item maximising the summed ``score`` (a seed × answer array): the Hungarian method."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-score)
    return dict(zip(rows.tolist(), cols.tolist()))


def _kept_order(match: dict[int, int], n: int) -> float:
    """The fraction of consecutive seed items whose matches keep their order (1 for a single item)."""
    if n < 2:
        return 1.0
    return sum(1 for i in range(n - 1) if i in match and i + 1 in match and match[i] < match[i + 1]) / (n - 1)
