"""The quantisation method registry: one entry per config class (as torchao registers a handler per config type).

A method is one module (the built-ins live in :mod:`mechlab.quant.methods`, one file each) holding its config
dataclass and one :func:`register` call that names

* ``config``: the frozen config dataclass — the registry's key (``type(config)``, subclasses included);
* ``cli_names`` / ``format_names``: its ``--method`` names and the ``method`` values of the checkpoint format
  (``config.method`` is written; ``config_from_dict`` reads it back);
* ``layer`` and ``transform``: the stored ``QuantizedLinear`` class and the function that fills one layer;
* ``unsupported``: why a Linear layer stays in float (None: every layer is coded);
* ``table``: how the method codes an embedding table (the token embedding, and the LM head when tied;
  :mod:`mechlab.quant.embedding`), ``config -> (stored layer's config, rotate inputs, per-row scales)``; None: the
  method does not code tables (``embedding=True`` is then refused);
* ``from_options``: the CLI's factory, ``(name, bits, options, train) -> config``;
* for a recipe that trains after PTQ (QAT, fine-tuning): ``ptq`` (its PTQ config) and ``train`` (the training run).

:func:`mechlab.quant.quantize_`, :func:`mechlab.quant.linear.quantized_linear`, :func:`config_from_dict` and the
CLI's :func:`mechlab.quant.run.make_config` look methods up here; none of them names a method.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mechlab.errors import ConfigError

_BY_TYPE: dict[type, QuantMethod] = {}
_BY_CLI: dict[str, QuantMethod] = {}
_BY_FORMAT: dict[str, QuantMethod] = {}
_BUILTINS_LOADED = False


@dataclass(frozen=True)
class QuantMethod:
    """One quantisation method.

    ``transform(layer, w, h, config, index) -> w_hat``: fill the empty ``layer`` (an instance of ``layer``, shaped
    like the float one) from float32 weights ``w`` (out, in) on the CPU and the proxy Hessian ``h`` (in, in)
    float64 or None, and return the weights it decodes to, float32 (out, in). ``index`` numbers the layer among
    the model's targets (for per-layer seeds that do not depend on the order the layers are coded in).
    ``unsupported(linear, config)``: a one-line reason, or None.
    ``from_options(name, bits, options, train)``: the config for ``--method name``; ``options`` holds every PTQ
    flag of the CLI (a method reads the ones it has), ``train`` only the training settings given.
    ``table(config) -> (inner config, rotate, row_scales)``: the config of the stored (V, d) matrix of an embedding
    table (a layer of this method), whether the table's input side gets random signs and a Hadamard transform
    outside it, and whether each row gets an fp16 scale (:class:`mechlab.quant.embedding.QuantizedEmbedding`).
    ``head(config)``: the config an untied LM head is coded with as a Linear layer under ``embedding=True`` (the
    table's bits; None: ``config`` itself).
    ``ptq(config)``/``train(model, teacher, config, stream, progress) -> summary dict``: recipes that train after
    PTQ. ``from_dict(d)``: the config from its stored fields (default ``config(**d)``)."""

    config: type
    cli_names: tuple[str, ...]
    from_options: Callable[..., Any]
    layer: type | None = None
    transform: Callable[..., Any] | None = None
    unsupported: Callable[[Any, Any], str | None] | None = None
    format_names: tuple[str, ...] = ()
    ptq: Callable[[Any], Any] | None = None
    train: Callable[..., dict] | None = None
    from_dict: Callable[[dict], Any] | None = None
    table: Callable[[Any], tuple[Any, bool, bool]] | None = None
    head: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config):
            raise ConfigError(f"a quantisation config must be a dataclass (got {self.config!r})")
        if not self.cli_names:
            raise ConfigError(f"{self.config.__name__}: a method needs at least one CLI name")
        if not self.format_names:
            object.__setattr__(self, "format_names", tuple(self.cli_names))
        if (self.layer is None) != (self.transform is None):
            raise ConfigError(f"{self.config.__name__}: register a stored layer and its transform together")
        if (self.ptq is None) != (self.train is None):
            raise ConfigError(f"{self.config.__name__}: a training recipe registers both ptq and train")
        if (self.layer is None) == (self.train is None):
            raise ConfigError(f"{self.config.__name__}: a method either codes layers (layer, transform) or trains "
                              f"after another method's PTQ (ptq, train)")

    @property
    def trains(self) -> bool:
        """Whether this is a recipe that trains after PTQ (QAT, fine-tuning)."""
        return self.train is not None

    def why_not(self, linear, config) -> str | None:
        """Why ``linear`` cannot be coded with ``config`` (None: it can)."""
        return None if self.unsupported is None else self.unsupported(linear, config)

    def make_layer(self, linear, config):
        """An empty stored layer of ``linear``'s shape (filled by ``transform`` or ``load_state_dict``)."""
        if self.layer is None:
            raise ConfigError(f"{self.cli_names[0]} trains after PTQ; quantise with its PTQ config "
                              f"(mechlab.quant.run.quantize_checkpoint runs both)")
        return self.layer(linear.in_features, linear.out_features, linear.bias is not None, config)


def register(method: QuantMethod) -> QuantMethod:
    """Add ``method``; a config class, CLI name or format name may be registered once (ConfigError otherwise)."""
    if method.config in _BY_TYPE:
        raise ConfigError(f"quantisation config {method.config.__name__} is already registered")
    for table, names, what in ((_BY_CLI, method.cli_names, "CLI"), (_BY_FORMAT, method.format_names, "format")):
        taken = [n for n in names if n in table]
        if taken:
            raise ConfigError(f"quantisation {what} name {taken[0]!r} is already registered")
    _BY_TYPE[method.config] = method
    _BY_CLI.update(dict.fromkeys(method.cli_names, method))
    _BY_FORMAT.update(dict.fromkeys(method.format_names, method))
    return method


def unregister(config: type) -> None:
    """Remove the method of config class ``config`` (tests register toy methods and take them out again)."""
    method = _BY_TYPE.pop(config)
    for table in (_BY_CLI, _BY_FORMAT):
        for name in [n for n, m in table.items() if m is method]:
            del table[name]


def _load_builtins() -> None:
    """Import every module of :mod:`mechlab.quant.methods` once (each registers its method)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    package = importlib.import_module("mechlab.quant.methods")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def method_for(config) -> QuantMethod:
    """The method of a config instance (by its type, then its base classes); ConfigError when none is."""
    _load_builtins()
    for cls in type(config).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    raise ConfigError(f"{type(config).__name__} is not a registered quantisation config; "
                      f"known: {', '.join(sorted(c.__name__ for c in _BY_TYPE))}")


def method_named(name: str) -> QuantMethod:
    """The method of a ``--method`` name; ConfigError listing the names when unknown."""
    _load_builtins()
    if name not in _BY_CLI:
        raise ConfigError(f"unknown method {name!r}; choose {', '.join(cli_names())}")
    return _BY_CLI[name]


def cli_names(trains: bool | None = None) -> list[str]:
    """Every ``--method`` name in registration order (``trains``: only recipes that do / do not train)."""
    _load_builtins()
    return [n for n, m in _BY_CLI.items() if trains is None or m.trains == trains]


def config_to_dict(cfg) -> dict[str, Any]:
    """The JSON-able form of a config: ``{"method": cfg.method, **fields}`` (nested configs as dicts)."""
    method_for(cfg)  # a registered config, so config_from_dict reads it back
    return {"method": cfg.method, **dataclasses.asdict(cfg)}


def config_from_dict(d: dict[str, Any]):
    """Inverse of :func:`config_to_dict`; ConfigError for an unknown method or fields its config does not have."""
    _load_builtins()
    d = dict(d)
    name = d.pop("method", None)
    method = _BY_FORMAT.get(name)
    if method is None:
        raise ConfigError(f"unknown quantisation method {name!r}")
    if method.from_dict is not None:
        return method.from_dict(d)
    known = {f.name for f in dataclasses.fields(method.config)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{name}: unknown setting {', '.join(sorted(unknown))} in a stored quantisation config")
    return method.config(**d)


def reject_training_settings(name: str, train: dict) -> None:
    """ConfigError when a method that does not train is given training settings (the CLI's QAT flags)."""
    if train:
        names = cli_names(trains=True)
        listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        raise ConfigError(f"training settings ({', '.join(train)}) only apply to --method {listed}")


__all__ = ["QuantMethod", "register", "unregister", "method_for", "method_named", "cli_names", "config_to_dict",
           "config_from_dict", "reject_training_settings"]
