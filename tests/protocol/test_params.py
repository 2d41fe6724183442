"""ParamSpec: declarations survive the wire, and `coerce` turns chat text into checked values."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ErrorCode, ParamSpec, RequestError, coerce_params, resolve_param
from protocol.codec import pack, unpack
from protocol.params import APPLIES, PARAM_TYPES

BOUNDS = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)


@st.composite
def specs(draw: st.DrawFn) -> ParamSpec:
    kind = draw(st.sampled_from(PARAM_TYPES))
    default = draw(
        {
            "float": st.floats(allow_nan=False),
            "int": st.integers(-(2**63), 2**63 - 1),
            "bool": st.booleans(),
            "str": st.text(max_size=20),
        }[kind]
    )
    return ParamSpec(
        name=draw(st.text(min_size=1, max_size=20)),
        type=kind,
        default=default,
        aliases=tuple(draw(st.lists(st.text(min_size=1, max_size=10), max_size=3))),
        minimum=draw(BOUNDS),
        maximum=draw(BOUNDS),
        applies=draw(st.sampled_from(APPLIES)),
        help=draw(st.text(max_size=40)),
    )


@given(specs())
def test_spec_round_trips_through_to_dict_and_the_codec(spec: ParamSpec) -> None:
    assert ParamSpec.from_dict(unpack(pack(spec.to_dict()))) == spec


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    spec = ParamSpec.from_dict({"name": "lr", "type": "float", "value": 0.1, "future": 1})
    assert spec == ParamSpec(name="lr", type="float", default=None)


LR = ParamSpec("learning_rate", "float", 0.001, aliases=("lr",), minimum=1e-6, maximum=1.0)
STEPS = ParamSpec("max_steps", "int", 1000, aliases=("steps",), minimum=1)
AUGMENT = ParamSpec("augment", "bool", False)
NOTE = ParamSpec("note", "str", "")
ITERS = ParamSpec("training_iters", "int", 1000, minimum=1, maximum=10**12)


@pytest.mark.parametrize(
    ("spec", "received", "expected"),
    [
        (LR, "0.01", 0.01),
        (LR, "1e-3", 0.001),
        (LR, " 2.5E-1 ", 0.25),
        (LR, 1, 1.0),
        (LR, 1e-6, 1e-6),
        (STEPS, "300000", 300000),
        (STEPS, "1e3", 1000),
        (STEPS, 7.0, 7),
        (STEPS, str(2**62 + 1), 2**62 + 1),
        (STEPS, 2**62 + 1, 2**62 + 1),
        (STEPS, 2**63 - 1, 2**63 - 1),  # the widest the wire carries
        (AUGMENT, "true", True),
        (AUGMENT, "Yes", True),
        (AUGMENT, "ON", True),
        (AUGMENT, "1", True),
        (AUGMENT, 1, True),
        (AUGMENT, True, True),
        (AUGMENT, "false", False),
        (AUGMENT, "no", False),
        (AUGMENT, " off ", False),
        (AUGMENT, "0", False),
        (AUGMENT, False, False),
        (NOTE, "1e-3", "1e-3"),
    ],
)
def test_coerce_accepts(spec: ParamSpec, received: Any, expected: Any) -> None:
    value = spec.coerce(received)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("spec", "received", "fragment"),
    [
        (LR, "2", "<= 1.0"),
        (LR, "1e-9", ">= 1e-06"),
        (LR, "nan", "finite"),
        (LR, "inf", "finite"),
        (LR, float("-inf"), "finite"),
        (LR, "fast", "a number"),
        (LR, True, "a number"),
        (LR, None, "a number"),
        (LR, [0.1], "a number"),
        (STEPS, "2.5", "whole number"),
        (STEPS, 2.5, "whole number"),
        (STEPS, "0", ">= 1"),
        # No maximum declared: an int's is still what the wire carries (msgpack, signed 64 bits).
        (STEPS, "1e400", "<= 9223372036854775807"),
        (STEPS, "9" * 23, "<= 9223372036854775807"),
        (STEPS, 2**63, "<= 9223372036854775807"),
        (ParamSpec("offset", "int", 0), -(2**63) - 1, ">= -9223372036854775808"),
        (LR, 10**400, "<= 1.0"),  # an int too big for a float is out of range, not an OverflowError
        (LR, "1e400", "<= 1.0"),  # finite text out of range, not "must be finite"
        (LR, "-1e400", ">= 1e-06"),
        (ITERS, "1" * 5000, "<= 1000000000000"),  # beyond int()'s 4300 digits
        (STEPS, False, "whole number"),
        (AUGMENT, "maybe", "true or false"),
        (AUGMENT, 2, "true or false"),
        (AUGMENT, None, "true or false"),
        (NOTE, 5, "text"),
    ],
)
def test_coerce_refuses_naming_the_param_and_the_value(spec: ParamSpec, received: Any, fragment: str) -> None:
    with pytest.raises(ValueError) as raised:
        spec.coerce(received)
    assert spec.name in str(raised.value)
    assert fragment in str(raised.value)
    assert repr(received)[:20] in str(raised.value)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int_params_keep_every_integer_exactly(number: int) -> None:
    spec = ParamSpec("n", "int", 0)
    assert spec.coerce(number) == number
    assert spec.coerce(str(number)) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_params_read_their_own_text(number: float) -> None:
    spec = ParamSpec("x", "float", 0.0)
    assert spec.coerce(repr(number)) == number
    assert spec.coerce(str(number)) == number


@given(st.floats(min_value=-10, max_value=10, allow_nan=False), st.floats(min_value=-5, max_value=5))
def test_range_is_enforced_inclusively(value: float, bound: float) -> None:
    spec = ParamSpec("x", "float", 0.0, minimum=bound)
    if value >= bound:
        assert spec.coerce(value) == value
    else:
        with pytest.raises(ValueError):
            spec.coerce(value)


@pytest.mark.parametrize("bad", [{"type": "complex"}, {"applies": "tomorrow"}])
def test_spec_declaration_is_checked_eagerly(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        ParamSpec(**{"name": "x", "type": "float", "default": 0.0, **bad})  # type: ignore[arg-type]


def test_resolve_param_by_name_or_alias_case_insensitively() -> None:
    assert resolve_param([LR, STEPS], "LR") is LR
    assert resolve_param([LR, STEPS], " Max_Steps ") is STEPS
    with pytest.raises(KeyError, match="known: learning_rate, max_steps"):
        resolve_param([LR, STEPS], "momentum")


def test_coerce_params_is_all_or_nothing_and_names_every_bad_entry() -> None:
    assert coerce_params([LR, STEPS], {"lr": "0.1", "steps": "5"}) == {"learning_rate": 0.1, "max_steps": 5}
    with pytest.raises(RequestError) as raised:
        coerce_params([LR, STEPS], {"lr": "0.1", "steps": "many", "momentum": "0.9"})
    assert raised.value.code == ErrorCode.INVALID_PARAMS
    assert set(raised.value.details["errors"]) == {"steps", "momentum"}
    assert "max_steps must be a whole number, received 'many'" in raised.value.message
    assert "unknown parameter 'momentum'" in raised.value.message
    assert not math.isnan(LR.coerce("0.5"))


@pytest.mark.parametrize(
    "update", [{"lr": 0.1, "learning_rate": 0.2}, {"LR": 0.1, "lr": 0.1}, {"learning_rate": 0.1, " Lr ": 0.2}]
)
def test_a_name_given_twice_through_an_alias_is_refused(update: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as raised:
        coerce_params([LR, STEPS], update)
    assert raised.value.code == ErrorCode.INVALID_PARAMS
    assert "learning_rate is given twice" in raised.value.message


def test_thousands_of_bad_names_make_a_short_error_naming_the_first_few_and_the_count() -> None:
    update = {f"{'x' * 200}_unknown_{index:04d}": 1 for index in range(4000)}  # alike when shortened
    with pytest.raises(RequestError) as raised:
        coerce_params([LR, STEPS], update)
    assert raised.value.message.count("unknown parameter") == 5
    assert raised.value.message.endswith("and 3995 more (4000 refused in all)")
    assert len(raised.value.message) < 1000
    assert raised.value.details["count"] == 4000
    assert all(len(name) <= 40 for name in raised.value.details["errors"])
