"""Command-line options generated from config dataclasses, so the CLI does not restate their fields.

A config field's help text is its *attribute docstring*: the string literal on the line after the field (the
convention of PEP 257, Sphinx autodoc, tyro and jsonargparse)::

    @dataclass
    class TrainConfig:
        seq_len: int = 256
        \"\"\"Training context in tokens.\"\"\"

:func:`field_docs` reads them from the class source with :mod:`ast`; :func:`config_options` turns the fields into
:class:`ConfigOption` specs (flag names, Typer type, default, help), a nested dataclass field flattened into its
own fields; :func:`typer_command` registers a Typer command whose options are those specs plus the command's own,
and hands the body the values and which of them were given on the command line (click's parameter source). That is
what lets a config file and explicit flags merge: :func:`merged` lays the explicitly given values over a base (a
config file, a resumed run, a method's defaults); defaults never override the base.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import inspect
import json
import logging
import textwrap
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from mechlab.errors import ConfigError

log = logging.getLogger(__name__)

BITS_FIELDS = ("bits", "k")  # a quantisation config's bits per weight: always spelled --bits on the command line


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: attribute docstring} of a dataclass and its dataclass bases (the string literal right after an
    annotated assignment in the class body, whitespace collapsed). Fields without one are absent. Reads the class
    source (:func:`inspect.getsource`); a class without source (built in a REPL) has no docs."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


@dataclass(frozen=True)
class ConfigOption:
    """One generated option: ``path`` is the field's place in the config (``("trellis", "L")`` for a nested one),
    ``param`` the Python/click parameter name, ``flags`` its spellings (``--rht/--no-rht`` for a bool), ``kind``
    the field's type, ``default`` the value shown (the field's), ``help`` the field's docstring."""

    path: tuple[str, ...]
    param: str
    flags: tuple[str, ...]
    kind: Any
    default: Any
    help: str

    @property
    def field(self) -> str:
        return self.path[-1]

    def annotation(self) -> Any:
        """The type Typer parses: tuples are one comma-separated string, dicts repeated KEY=VALUE strings."""
        base, optional = _unwrap(self.kind)
        if _origin(base) is tuple:
            t: Any = str
        elif _origin(base) is dict:
            return list[str] | None
        else:
            t = base
        return t | None if optional or self.default is None else t

    def typer_default(self) -> Any:
        base, _ = _unwrap(self.kind)
        if _origin(base) is tuple and self.default is not None:
            return ",".join(map(str, self.default))
        if _origin(base) is dict:
            return None
        return self.default

    def to_field(self, value: Any) -> Any:
        """The command-line value as the field's value (ConfigError for a malformed KEY=VALUE)."""
        base, _ = _unwrap(self.kind)
        if value is None:
            return None
        if _origin(base) is tuple:
            return tuple(s.strip() for s in value.split(",") if s.strip())
        if _origin(base) is dict:
            out = {}
            for item in value:
                key, eq, raw = item.partition("=")
                if not eq or not key:
                    raise ConfigError(f"{self.flags[0]} takes KEY=VALUE, got {item!r}")
                try:
                    out[key.strip()] = json.loads(raw)
                except json.JSONDecodeError:
                    out[key.strip()] = raw
            return out
        return value


def _origin(t: Any) -> Any:
    return typing.get_origin(t) or t


def _unwrap(t: Any) -> tuple[Any, bool]:
    """(type without None, whether None was allowed) of ``X | None``."""
    args = typing.get_args(t)
    if _origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return t, False


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_options(cls: type, *, defaults: Any = None, skip: Iterable[str] = (), flags: dict[str, tuple[str, ...]] | None = None,
                   taken: Iterable[str] = (), prefix: tuple[str, ...] = (), strict: bool = True) -> list[ConfigOption]:
    """The options of dataclass ``cls``'s fields, in field order. ``defaults``: an instance whose values are shown
    as the defaults (else the fields' defaults). A field whose type is a dataclass is flattened into its own
    fields. ``skip``: dotted field paths left out (``"tile"``, ``"trellis.tile"``); ``flags``: {field: spellings} replacing
    ``--field-name``; ``taken``: option names the command already has, so a field of that name is spelled
    ``--<owner>-<name>`` (the nested field's name, or the config class's ``method``). A field in ``BITS_FIELDS`` is
    spelled ``--bits`` (``--k`` too). A field without a docstring (the only help text) raises ConfigError, or with
    ``strict=False`` gets an empty help and a logged warning (the CLI stays usable; the tests hold every config
    the CLI exposes to the convention)."""
    flags, skip, taken = flags or {}, set(skip), set(taken)
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    out: list[ConfigOption] = []
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        if ".".join(path) in skip:
            continue
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if dataclasses.is_dataclass(hints[f.name]):
            out += config_options(hints[f.name], defaults=default, skip=skip, flags=flags, taken=taken, prefix=path,
                                  strict=strict)
            continue
        if f.name not in docs:
            why = f"{cls.__name__}.{f.name} has no docstring (the field's help text on the command line)"
            if strict:
                raise ConfigError(why)
            log.warning(why)
        if f.name in flags:
            names = flags[f.name]
        elif f.name in BITS_FIELDS:
            names = ("--bits",) if f.name == "bits" else ("--bits", "--k")
        elif f.name in taken:
            owner = prefix[-1] if prefix else getattr(cls, "method", cls.__name__.lower())
            names = (_flag(f"{owner}_{f.name}"),)
        else:
            names = (_flag(f.name),)
        kind = hints[f.name]
        if _unwrap(kind)[0] is bool:
            names = tuple(f"{n}/--no-{n[2:]}" for n in names[:1]) + names[1:]
        out.append(ConfigOption(path, "cfg__" + "__".join(path), names, kind, default, docs.get(f.name, "")))
    return out


def given_values(ctx: typer.Context, options: list[ConfigOption], values: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """{field path: value} of the options given on the command line (not their defaults)."""
    return {o.path: o.to_field(values[o.param]) for o in options
            if getattr(ctx.get_parameter_source(o.param), "name", None) in ("COMMANDLINE", "ENVIRONMENT")}


def merged(base: dict[str, Any], given: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """``base`` (a config as a dict, nested configs as dicts) with the given values laid over it, nested paths
    included: explicit flags win, and what was not given keeps the base's value."""
    out = copy.deepcopy(base)
    for path, value in given.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if isinstance(value, dict) and isinstance(node.get(path[-1]), dict):
            value = {**node[path[-1]], **value}  # a dict field (--set KEY=VALUE): merged key by key over the base's
        node[path[-1]] = value
    return out


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def check_types(cls: type, d: dict[str, Any], where: str) -> None:
    """ConfigError (one line, naming ``where`` and the field) unless every value of ``d`` (a config as a dict, as a
    JSON file holds it) has the type dataclass ``cls`` declares for that field: a bool is not an int, an int is a
    float, a tuple field takes a JSON list, a nested config an object (checked field by field), ``X | None`` also
    null. Unknown fields are refused too. Types it does not know (Literal, Any) pass."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: must be a JSON object of {cls.__name__} fields, got {d!r}")
    hints, names = typing.get_type_hints(cls), {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)} (not a field of {cls.__name__})")
    for key, v in d.items():
        kind, optional = _unwrap(hints[key])
        if v is None and optional:
            continue
        if dataclasses.is_dataclass(kind):
            check_types(kind, v, f"{where}: {key}")
            continue
        if not _is_instance(v, kind):
            raise ConfigError(f"{where}: {key} must be {_type_name(_origin(kind))}, got {v!r}")


def _is_instance(v: Any, kind: Any) -> bool:
    origin = _origin(kind)
    if origin is bool:
        return isinstance(v, bool)
    if origin is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if origin is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if origin is str:
        return isinstance(v, str)
    if origin is tuple:
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        return isinstance(v, (list, tuple)) and all(_is_instance(x, args[0]) for x in v) if args else isinstance(v, (list, tuple))
    if origin is dict:
        return isinstance(v, dict) and all(isinstance(k, str) for k in v)
    if origin is list:
        return isinstance(v, list)
    return True  # Literal, Any, unions of several types: the config's own checks decide


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON config file as a dict; ConfigError naming the file when it cannot be read or is not an object."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"config {path} must hold a JSON object of config fields")
    return d


def typer_command(app: typer.Typer, name: str, options: list[ConfigOption], body: Callable[..., None], *,
                  own: list[inspect.Parameter] = (), help: str | None = None, **command_kwargs) -> None:
    """Register command ``name`` on ``app``: the parameters ``own`` (written as usual, ``typer.Option`` defaults)
    then one option per :class:`ConfigOption`. The body is called as ``body(ctx, own values..., given=...,
    values=...)`` with ``given`` the field values given on the command line (:func:`given_values`)."""
    own_names = [p.name for p in own]

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        given = given_values(ctx, options, kwargs)
        body(ctx, **{k: kwargs[k] for k in own_names}, given=given, values=kwargs)

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context), *own]
    for o in options:
        params.append(inspect.Parameter(o.param, inspect.Parameter.KEYWORD_ONLY, annotation=o.annotation(),
                                        default=typer.Option(o.typer_default(), *o.flags, help=o.help,
                                                             show_default=o.default is not None and o.default != {})))
    params = sorted(params, key=lambda p: p.kind)  # positional (ctx, arguments) before keyword-only
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = command.__qualname__ = name.replace("-", "_")
    command.__doc__ = help
    app.command(name, help=help, **command_kwargs)(command)


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, whitespace collapsed (a command's one-screen help)."""
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


__all__ = ["ConfigOption", "field_docs", "config_options", "given_values", "merged", "read_config_file",
           "typer_command", "first_paragraph", "BITS_FIELDS"]
