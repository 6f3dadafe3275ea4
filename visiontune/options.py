"""Option dataclasses and the command-line options generated from them.

An option is declared once, as a dataclass field made with :func:`option` (default, help text,
and how it shows on the command line); :func:`add_options` turns the fields of a dataclass into
argparse options and :func:`given_options` reads back those a user gave. ``TrainConfig``, the
data options, the trial resources and the search options are all declared this way, so the
CLI, the recorded ``search.json`` and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any, Callable, Iterable

from visiontune.errors import ConfigError


def option(default: Any = None, help: str = "", *, metavar: str | None = None, choices: Iterable[str] | None = None,
           flag: str | None = None, group: str | None = None, cli: bool = True,
           parse: Callable[[Any], Any] | None = None, repeat: bool = False, default_factory: Any = None,
           **extra: Any) -> Any:
    """A dataclass field that is also a command-line option.

    ``flag`` overrides the option's name (default ``--field-name``); ``group`` is the help
    section; ``cli=False`` keeps it off the command line; ``repeat`` collects every use into a
    list, which ``parse`` turns into the field's value. ``extra`` goes into the field's metadata.
    """
    metadata = {"help": help, "metavar": metavar, "choices": tuple(choices) if choices else None, "flag": flag,
                "group": group, "cli": cli, "parse": parse, "repeat": repeat, **extra}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(hint: Any) -> Any:
    """``int`` for ``int | None``; the hint itself otherwise."""
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


def flag_of(spec: dataclasses.Field) -> str:
    """The command-line flag of a field."""
    return spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")


def cli_fields(cls: type, only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options (``only``/``exclude`` narrow them)."""
    chosen = set(only) if only is not None else None
    return [spec for spec in dataclasses.fields(cls)
            if spec.metadata.get("cli", True) and spec.name not in exclude and (chosen is None or spec.name in chosen)]


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                exclude: Iterable[str] = (), group: str | None = None) -> None:
    """One option per field of ``cls``, in help sections by each field's group.

    Defaults stay in the dataclass: an option not given is absent from the parsed namespace
    (``argparse.SUPPRESS``), so :func:`given_options` returns only what the user set.
    """
    hints = typing.get_type_hints(cls)
    fields = cli_fields(cls, only, exclude)
    order = [*getattr(cls, "OPTION_GROUPS", ()), *(spec.metadata.get("group") for spec in fields)]
    groups: dict[str, Any] = {}
    for title in [group] if group else [t or "options" for t in order]:
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
    for spec in fields:
        target = groups[group or spec.metadata.get("group") or "options"]
        meta = spec.metadata
        base = _base_type(hints[spec.name])
        default = spec.default if spec.default is not dataclasses.MISSING else None
        hidden = default is None or default is False or default == "" or base is bool or meta.get("repeat")
        text = meta.get("help", "") + ("" if hidden else f" [{default}]")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": spec.name,
                                  "help": text.replace("%", "%%")}  # argparse %-formats help text
        flag = flag_of(spec)
        if base is bool and default is None:
            kwargs["action"] = argparse.BooleanOptionalAction  # unset, on or off (over a --config file)
        elif base is bool:
            # A switch that is off by default is --name; one that is on is turned off with --no-name.
            kwargs["action"] = "store_false" if default is True else "store_true"
            if default is True and not meta.get("flag"):
                flag = "--no-" + spec.name.replace("_", "-")
        elif meta.get("repeat"):
            kwargs.update(action="append", metavar=meta.get("metavar") or spec.name.upper())
        else:
            kwargs["type"] = base if base in (int, float, str) else str
            if meta.get("choices"):
                kwargs["choices"] = list(meta["choices"])
            if meta.get("metavar") or not meta.get("choices"):
                kwargs["metavar"] = meta.get("metavar") or spec.name.upper()
        target.add_argument(flag, **kwargs)


def given_options(cls: type, args: argparse.Namespace, *, only: Iterable[str] | None = None,
                  exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line, parsed (``parse`` applied)."""
    values = {}
    for spec in cli_fields(cls, only, exclude):
        if spec.name in vars(args):
            value = getattr(args, spec.name)
            parse = spec.metadata.get("parse")
            values[spec.name] = parse(value) if parse else value
    return values


def known_values(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are fields of ``cls`` (reading a record made by a newer or
    older version)."""
    names = {spec.name for spec in dataclasses.fields(cls)}
    return {key: value for key, value in values.items() if key in names}


def parse_set_options(pairs: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs -> dict; values parse as JSON where they can (16, 0.5, true)."""
    fixed: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set precision=bf16")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        fixed[key.strip().replace("-", "_")] = value
    return fixed
