"""One configuration layer for every chattrain program (trainer, sidecar, trainctl).

Each option is declared once: its flag, its ``CHATTRAIN_*`` variable, its type, its default and its
bounds. A flag beats its variable, which beats the default. A value from either place is converted
and checked by the same code, so ``CHATTRAIN_PROGRESS_INTERVAL=soon`` is the same one-line usage
error (exit 2) as ``--progress-interval soon``, in every program, naming where the value came from.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from protocol.params import parse_bool

ENV_PREFIX = "CHATTRAIN_"
USAGE_ERROR = 2
Fail = Callable[[str], NoReturn]


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit 2 (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Option:
    """One option. `type` None is a switch; `repeat` collects a list (its variable: comma-separated)."""

    flag: str
    env: str  # the variable's name after CHATTRAIN_
    help: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive: the value must be greater
    finite: bool = True
    repeat: bool = False
    separator: str | None = ","  # how a repeated option's variable is split (None: whitespace)
    metavar: str | None = None
    dest: str | None = None

    @property
    def name(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.env


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    options: Iterable[Option],
    *,
    suppress: bool = False,
) -> None:
    """Declare `options` on `parser`. With `suppress` (a subcommand repeating the global options)
    a flag given there overrides the global one, and one not given leaves it alone."""
    for option in options:
        default = argparse.SUPPRESS if suppress else None
        text = f"{option.help} [env {option.variable}]"
        if option.type is None:
            parser.add_argument(
                option.flag, dest=option.name, action="store_const", const=True, default=default, help=text
            )
        else:
            parser.add_argument(
                option.flag,
                dest=option.name,
                type=argument_type(option.type),
                choices=option.choices,
                action="append" if option.repeat else "store",
                default=default,
                metavar=option.metavar or option.env,
                help=text,
            )


def resolve_options(
    options: Iterable[Option],
    namespace: argparse.Namespace,
    environ: Mapping[str, str],
    fail: Fail,
) -> dict[str, Any]:
    """Each option's value: the flag's, else its variable's, else the default; checked, and a
    bad one reported through `fail` (a parser's `error`, or a function raising the caller's error)."""
    values: dict[str, Any] = {}
    for option in options:
        given = getattr(namespace, option.name, None)
        if given is None:
            given = _from_environment(option, environ, fail)
        if given is None:
            given = option.default
        elif option.type is not None:
            for item in given if option.repeat else [given]:
                _check(option, item, fail)
        values[option.name] = tuple(given or ()) if option.repeat else given
    return values


def parse_options(
    parser: argparse.ArgumentParser,
    options: Sequence[Option],
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Parse `argv` (sys.argv when None) and resolve every option against `environ`."""
    return resolve_options(options, parser.parse_args(argv), environ, parser.error)


def _from_environment(option: Option, environ: Mapping[str, str], fail: Fail) -> Any:
    raw = environ.get(option.variable)
    if raw is None or not raw.strip():
        return None  # an empty variable (as a .env template leaves it) is unset
    try:
        if option.type is None:
            return parse_bool(raw) or None
        if option.repeat:
            return [option.type(item.strip()) for item in raw.split(option.separator) if item.strip()]
        value = option.type(raw.strip())
    except (ValueError, TypeError) as exc:
        fail(f"{option.variable}={raw[:80]!r}: {_reason(exc)}")
    if option.choices is not None and value not in option.choices:
        fail(f"{option.variable}={raw[:80]!r}: must be one of {', '.join(option.choices)}")
    return value


def _check(option: Option, value: Any, fail: Fail) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    bounds = []
    if option.minimum is not None:
        bounds.append(f">= {option.minimum:g}")
    if option.above is not None:
        bounds.append(f"> {option.above:g}")
    fine = (option.minimum is None or value >= option.minimum) and (
        option.above is None or value > option.above
    )
    if isinstance(value, float) and option.finite and not math.isfinite(value):
        fine = False
        bounds.append("finite")
    if not fine:
        fail(f"{option.flag} ({option.variable}) must be {' and '.join(bounds)}, got {value!r}")


def argument_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """`convert` as an argparse type: its ValueError's reason reaches the one-line error."""

    def converted(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(f"{text[:80]!r}: {_reason(exc)}") from None

    return converted


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("invalid literal for int()"):
        return "not a whole number"
    if text.startswith(("invalid literal", "could not convert")):
        return "not a number"
    return text.splitlines()[0][:200] if text else type(exc).__name__
