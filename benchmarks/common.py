"""Benchmark conventions: a printed table and benchmarks/results/NAME.json (flat figures + machine + command).

Only the committed configuration of NAME writes NAME.json: every option at the parser's default, or, for a result
a script registers with other arguments (``COMMITTED[NAME]``, the arguments of its recorded command), at those.
Any other run (``--quick``, fewer rounds, another batch, more sequences, another thread count...) writes beside the
full results, never over them: NAME.quick.json and NAME.quick.png. :func:`is_reference_run` is that rule; options
that only name the output (``--name``) or cannot change the figures are passed to it as ``ignore``. Every output
path of a benchmark comes from ``result_path``; the claim pages read only the full files.

A benchmark's parser starts from :func:`benchmark_parser` (``--quick`` and, where it has them, ``--threads``,
``--name``, ``--data-dir``: the options every benchmark shares, declared once), its ``main`` reads the arguments with
:func:`parse_benchmark_args` (arguments, result name, quick) and sets threads with :func:`set_threads`; its figures
are saved with :func:`mechlab.utils.save_figure` (atomic PNG).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from mechlab.utils import machine_description, write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Seconds per call of ``fn`` (best effort: one warm call first)."""
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def matmul_flops(n: int = 2048, dtype: torch.dtype = torch.float32, seconds: float = 2.0) -> float:
    """Achieved FLOP/s of an n×n matmul through torch on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        calls += 1
    return 2 * n**3 * calls / (time.perf_counter() - t0)


def train_throughput(models: dict[str, torch.nn.Module], x: torch.Tensor, rounds: int, steps: int) -> dict[str, float]:
    """Training tokens/s (forward, backward, AdamW step) of each model on the batch x (B, T+1): one warm-up step
    each, then ``rounds`` rounds that alternate the models, ``steps`` steps per model per round; median per model."""
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name):
        _, loss = models[name](x[:, :-1], x[:, 1:])
        loss.backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)

    for name in models:  # warm-up
        step(name)
    times = {k: [] for k in models}
    for _ in range(rounds):
        for name in models:
            t = time.perf_counter()
            for _ in range(steps):
                step(name)
            times[name].append((time.perf_counter() - t) / steps)
    tokens = x.shape[0] * (x.shape[1] - 1)
    return {k: tokens / statistics.median(v) for k, v in times.items()}


def committed_configuration(parser: argparse.ArgumentParser, reference: str | Sequence[str] = ()) -> dict[str, Any]:
    """The option values (dest -> value) of the committed run: ``parser.parse_args(reference)``, where ``reference``
    is the argument list (or a shell-quoted string) of the committed command; with none, the parser's defaults
    (converted by the option's type as argparse does, so no required option is needed)."""
    args = shlex.split(reference) if isinstance(reference, str) else list(reference)
    if args:
        return vars(parser.parse_args(args))
    out = {}
    for action in parser._actions:
        if action.dest == argparse.SUPPRESS or action.default == argparse.SUPPRESS:
            continue  # --help
        default = parser.get_default(action.dest)
        if isinstance(default, str) and action.type is not None:
            default = action.type(default)
        out[action.dest] = default
    return out


def changed_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, ignore: Iterable[str] = (),
                      reference: str | Sequence[str] = ()) -> list[str]:
    """The options (as ``--opt VALUE``) in which ``args`` differ from the committed configuration (see
    :func:`committed_configuration`), leaving out the dests in ``ignore``; ``quick`` is an option like any other."""
    ref, given, skip = committed_configuration(parser, reference), vars(args), set(ignore)
    options = {a.dest: a.option_strings[-1] if a.option_strings else a.dest for a in parser._actions}
    return [f"{options.get(k, k)} {given.get(k)!r}" for k in sorted(ref.keys() | given.keys())
            if k not in skip and given.get(k) != ref.get(k)]


def is_reference_run(parser: argparse.ArgumentParser, args: argparse.Namespace, ignore: Iterable[str] = (),
                     reference: str | Sequence[str] = ()) -> bool:
    """Whether this run is the committed configuration and may write NAME.json: every option but those in ``ignore``
    (dests of options that only name the output, or that do not change the figures) equals the parser's default, or
    its value in ``reference`` (the arguments of a result's registered committed command). Call it on the arguments
    as parsed, before a script rewrites any of them. Anything else writes NAME.quick.json."""
    return not changed_arguments(parser, args, ignore, reference)


def parse_quick(build_parser: Callable[[], argparse.ArgumentParser], quick_defaults: dict[str, Any],
                argv: Sequence[str] | None = None, ignore: Iterable[str] = ()
                ) -> tuple[argparse.ArgumentParser, argparse.Namespace, bool]:
    """(parser, arguments, quick) of a script with ``--quick``: the quick values are defaults for the options not
    given (the arguments are parsed again, so that the options given win), and quick is True for every run that is
    not the committed configuration (:func:`is_reference_run` of the final arguments against the plain parser's
    defaults), which writes the .quick files."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        quick_parser = build_parser()
        quick_parser.set_defaults(**quick_defaults)
        args = quick_parser.parse_args(argv)
    return parser, args, not is_reference_run(parser, args, ignore)


_ABSENT = object()
DATA_DIR_HELP = ("a local data directory to read the text from (default: MECHLAB_DATA or the cache); every file is "
                 "checked against its sha256, so it cannot change the figures")


def _thread_count(text: str) -> int:
    """``--threads`` values: positive integers (anything else is argparse's one-line usage error)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def benchmark_parser(doc: str | None, quick: str, *, threads: Any = _ABSENT, threads_help: str | None = None,
                     name: Any = _ABSENT, name_help: str = "result file stem under benchmarks/results",
                     data_dir: bool = False) -> argparse.ArgumentParser:
    """The parser every benchmark starts from, holding the options they share; the script adds its own.

    ``doc`` (the module docstring) is the description, printed as written. ``--quick`` is always there (``quick`` is
    its help: what the smoke run leaves out). Given ``threads``, ``--threads`` (torch threads) with that default:
    ``None`` for torch's own count, an int, or a list for one row per count (``nargs="+"``). Given ``name``,
    ``--name`` (the result file stem, with that default; it only names the output, so pass it to
    :func:`is_reference_run` in ``ignore``). ``data_dir``: ``--data-dir`` (a checked local copy of the data; also one
    for ``ignore``). Pair with :func:`parse_benchmark_args` and :func:`set_threads`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=quick)
    if threads is not _ABSENT:
        several = isinstance(threads, (list, tuple))
        default_help = ("torch thread counts, one row per count" if several else
                        "torch threads (default: torch's own count)" if threads is None else "torch threads")
        ap.add_argument("--threads", type=_thread_count, default=threads, help=threads_help or default_help,
                        **({"nargs": "+"} if several else {}))
    if name is not _ABSENT:
        ap.add_argument("--name", default=name, help=name_help)
    if data_dir:
        ap.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    return ap


def parse_benchmark_args(build_parser: Callable[[], argparse.ArgumentParser],
                         output: Callable[[argparse.ArgumentParser, argparse.Namespace], tuple[str, bool]],
                         argv: Sequence[str] | None = None, quick_defaults: dict[str, Any] | None = None
                         ) -> tuple[argparse.ArgumentParser, argparse.Namespace, str, bool]:
    """(parser, arguments, result name, quick) of a benchmark run: ``build_parser()`` parses ``argv`` (None: the command
    line) and the script's ``output(parser, arguments)`` names the result and says whether the run is the committed
    configuration (:func:`is_reference_run`: quick is True for every other run, which writes NAME.quick.json).
    ``quick_defaults``: the smoke run's values of options not given on the command line, applied under ``--quick``
    (the arguments are parsed again, as :func:`parse_quick` does, so that options given explicitly win)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if quick_defaults and args.quick:
        quick_parser = build_parser()
        quick_parser.set_defaults(**quick_defaults)
        args = quick_parser.parse_args(argv)
    name, quick = output(ap, args)
    return ap, args, name, quick


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count to ``threads`` (None: leave torch's own count); returns the count in use."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def result_path(name: str, quick: bool, suffix: str = ".json") -> Path:
    """Where a benchmark writes its output file ``name`` + ``suffix`` (".json", ".png"): benchmarks/results/NAME.json
    for the committed configuration, benchmarks/results/NAME.quick.json beside it for any other run (quick, reduced
    or different: ``quick = not is_reference_run(...)``), so that such a run never replaces the committed results."""
    if not name or Path(name).name != name or name.endswith(".quick"):
        raise ValueError(f"result name {name!r}: give a plain file stem such as 'trellis_mse' (no folder, no .quick)")
    if not suffix.startswith("."):
        raise ValueError(f"suffix {suffix!r} must start with a dot, as '.json' or '.png'")
    return RESULTS / f"{name}{'.quick' if quick else ''}{suffix}"


def write_result(name: str, figures: dict[str, Any], *, quick: bool) -> Path:
    """Write ``figures`` with ``quick``, the machine and the command to ``result_path(name, quick)``; returns the path.
    ``quick`` is required: a run that is not the committed configuration (``not is_reference_run(...)``: ``--quick``,
    fewer rounds or samples, other sizes) must say so, and lands in NAME.quick.json."""
    out = {**figures, "quick": bool(quick), "machine": machine_description(), "command": " ".join(["python", *sys.argv])}
    path = result_path(name, quick)
    write_json_atomic(path, out)
    return path


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{v:,.3g}" if isinstance(v, float) else str(v) for v in r.values()))
    Console().print(table)
