"""Parameter declarations: one `ParamSpec` per parameter drives validation, `describe`, help and CLIs.

The trainer declares its parameters once; `describe` sends them as maps (`to_dict`), and clients
rebuild them (`from_dict`) to parse what a person typed ("lr 0.01") before sending it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.codec import INT_MAX, INT_MIN
from protocol.errors import ErrorCode, RequestError

PARAM_TYPES = ("float", "int", "bool", "str")
# When a change takes effect: at the next training step, at once, or at the next epoch / restart.
APPLIES = ("next_step", "now", "next_epoch")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# Error replies stay short whatever was sent: names are shortened, and only the first few listed.
MAX_NAME_CHARS = 40
MAX_LISTED_ERRORS = 5


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is a ValueError, never
    silently false (``CHATTRAIN_AUTOSTART=ture`` must not quietly mean "no")."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected one of {', '.join(sorted(TRUE_WORDS | FALSE_WORDS))}")


def split_assignment(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` into its stripped halves; a ValueError names what was expected.

    The one parser of assignments: trainer ``--param``, trainctl ``start --param`` and the chat's
    ``lr=0.01`` all go through it (the value is typed later, against the parameter's declaration).
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME=VALUE, received {text[:80]!r}")
    return name.strip(), value.strip()


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, aliases, type, allowed range and when a change applies."""

    name: str
    type: str
    default: Any
    aliases: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    applies: str = "next_step"
    help: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name!r}: type must be one of {PARAM_TYPES}")
        if self.applies not in APPLIES:
            raise ValueError(f"param {self.name!r}: applies must be one of {APPLIES}")

    def coerce(self, value: Any) -> Any:
        """Return `value` as this parameter's type, or raise ValueError naming the param and value."""
        converted = self._convert(value)
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            low, high = self._bounds()
            if low is not None and converted < low:
                raise ValueError(f"{self.name} must be >= {low}, received {value!r:.60}")
            if high is not None and converted > high:
                raise ValueError(f"{self.name} must be <= {high}, received {value!r:.60}")
        return converted

    def _bounds(self) -> tuple[float | None, float | None]:
        """The declared range; an int's is also what the wire can carry, so that a value beyond
        64 bits is refused as out of range here rather than failing later, when it is encoded."""
        if self.type != "int":
            return self.minimum, self.maximum
        low = INT_MIN if self.minimum is None else max(self.minimum, INT_MIN)
        high = INT_MAX if self.maximum is None else min(self.maximum, INT_MAX)
        return low, high

    def _convert(self, value: Any) -> Any:
        received = f"{self.name} must be {self._article()}, received {value!r:.60}"
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            try:
                return parse_bool(str(value))
            except ValueError:
                raise ValueError(received) from None
        if self.type == "str":
            if isinstance(value, str):
                return value
            raise ValueError(received)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(received)
        if self.type == "int" and isinstance(value, int):
            return value  # exact: a detour through float rounds integers beyond 2**53
        if self.type == "int" and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass  # "1e3" and "7.0" still count, through float below
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float's range: out of range, as "1e400" is
            number = math.inf if value > 0 else -math.inf
        except ValueError:
            raise ValueError(received) from None
        if not math.isfinite(number):
            # "1e400", or an integer of thousands of digits, is a finite number out of range.
            low, high = self._bounds()
            bound = high if number > 0 else low
            if math.isinf(number) and bound is not None and any(c.isdigit() for c in str(value)):
                side = "<=" if number > 0 else ">="
                raise ValueError(f"{self.name} must be {side} {bound}, received {value!r:.60}")
            raise ValueError(f"{self.name} must be finite, received {value!r:.60}")
        if self.type == "float":
            return number
        if not number.is_integer():
            raise ValueError(received)
        return int(number)

    def _article(self) -> str:
        return {"float": "a number", "int": "a whole number", "bool": "true or false"}.get(self.type, "text")

    def describe_range(self) -> str:
        """Human text for the allowed range, e.g. '1e-06 .. 1.0'."""
        if self.minimum is None and self.maximum is None:
            return "any"
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{low} .. {high}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "aliases": list(self.aliases),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "applies": self.applies,
            "help": self.help,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParamSpec:
        """Rebuild a spec from `describe`; unknown keys are ignored."""
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            default=data.get("default"),
            aliases=tuple(str(alias) for alias in data.get("aliases") or ()),
            minimum=data.get("minimum"),
            maximum=data.get("maximum"),
            applies=str(data.get("applies", "next_step")),
            help=str(data.get("help", "")),
        )


def resolve_param(specs: Iterable[ParamSpec], name: str) -> ParamSpec:
    """The spec whose name or alias is `name` (case-insensitive); KeyError with the known names."""
    wanted = name.strip().lower()
    specs = list(specs)
    for spec in specs:
        if wanted == spec.name.lower() or wanted in (alias.lower() for alias in spec.aliases):
            return spec
    known = ", ".join(spec.name for spec in specs)
    raise KeyError(f"unknown parameter {_shown(name)!r}; known: {known}")


def coerce_params(specs: Iterable[ParamSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a whole update, all or nothing: ``{canonical_name: coerced_value}``.

    Every entry is checked, so a caller can fix them all at once; a name given twice (directly or
    through an alias, in any case) is refused. On any bad entry raises
    ``RequestError(INVALID_PARAMS)`` whose message names the first few and counts the rest, and whose
    ``details.errors`` maps each of those (names shortened) to its reason.
    """
    specs = list(specs)
    coerced: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    errors: list[tuple[str, str]] = []  # (shortened name, reason); shortened names may collide
    for key, value in values.items():
        name = _shown(str(key))
        try:
            spec = resolve_param(specs, str(key))
        except KeyError as exc:
            errors.append((name, str(exc.args[0])))
            continue
        if spec.name in given_as:
            errors.append((name, f"{spec.name} is given twice (as {given_as[spec.name]!r} and {name!r})"))
            continue
        given_as[spec.name] = name
        try:
            coerced[spec.name] = spec.coerce(value)
        except ValueError as exc:
            errors.append((name, str(exc)))
    if errors:
        raise _params_error(errors)
    return coerced


def _shown(name: str) -> str:
    return name if len(name) <= MAX_NAME_CHARS else f"{name[: MAX_NAME_CHARS - 3]}..."


def _params_error(errors: list[tuple[str, str]]) -> RequestError:
    listed = errors[:MAX_LISTED_ERRORS]
    message = "; ".join(reason for _, reason in listed)
    if len(errors) > len(listed):
        message += f"; and {len(errors) - len(listed)} more ({len(errors)} refused in all)"
    return RequestError(ErrorCode.INVALID_PARAMS, message, {"errors": dict(listed), "count": len(errors)})
