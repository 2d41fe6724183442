"""The one configuration layer: the same rules and the same one-line errors in every program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.options import Option, Parser, add_options, parse_options

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = (
    Option("--every", "EVERY", "seconds", type=float, above=0, default=1.0),
    Option("--count", "COUNT", "how many", type=int, minimum=0, default=3),
    Option("--tag", "TAGS", "tags", repeat=True, dest="tags"),
    Option("--loud", "LOUD", "a switch", type=None, default=False),
    Option("--mode", "MODE", "a choice", choices=("a", "b"), default="a"),
)


def parse(argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    parser = Parser(prog="prog")
    add_options(parser, OPTIONS)
    return parse_options(parser, OPTIONS, argv, environ)


def test_a_flag_beats_its_variable_which_beats_the_default() -> None:
    assert parse([], {})["every"] == 1.0
    assert parse([], {"CHATTRAIN_EVERY": "2.5"})["every"] == 2.5
    assert parse(["--every", "4"], {"CHATTRAIN_EVERY": "2.5"})["every"] == 4.0
    assert parse([], {"CHATTRAIN_EVERY": "  "})["every"] == 1.0  # an empty variable is unset
    assert parse([], {"CHATTRAIN_TAGS": "x, y,,z"})["tags"] == ("x", "y", "z")
    assert parse(["--tag", "w"], {"CHATTRAIN_TAGS": "x,y"})["tags"] == ("w",)
    assert parse([], {"CHATTRAIN_LOUD": "Yes"})["loud"] is True
    assert parse([], {"CHATTRAIN_LOUD": "off"})["loud"] is False
    assert parse(["--loud"], {"CHATTRAIN_LOUD": "0"})["loud"] is True


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"CHATTRAIN_EVERY": "soon"}, "prog: error: CHATTRAIN_EVERY='soon': not a number"),
        ([], {"CHATTRAIN_EVERY": "0"}, "--every (CHATTRAIN_EVERY) must be > 0, got 0.0"),
        (["--every", "nan"], {}, "must be > 0 and finite, got nan"),
        (["--every", "inf"], {}, "must be > 0 and finite, got inf"),
        ([], {"CHATTRAIN_COUNT": "2.5"}, "CHATTRAIN_COUNT='2.5': not a whole number"),
        (["--count", "-1"], {}, "--count (CHATTRAIN_COUNT) must be >= 0, got -1"),
        ([], {"CHATTRAIN_LOUD": "ture"}, "CHATTRAIN_LOUD='ture': expected one of"),
        ([], {"CHATTRAIN_MODE": "c"}, "CHATTRAIN_MODE='c': must be one of a, b"),
        (["--count", "many"], {}, "argument --count: 'many': not a whole number"),
    ],
)
def test_a_bad_value_from_a_flag_or_a_variable_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv, environ)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("program", [["-m", "trainer"], ["-m", "sidecar"], ["-m", "trainctl", "status"]])
def test_every_program_refuses_the_same_bad_variable_the_same_way(program: list[str], tmp_path: Path) -> None:
    # Once a switch in the sidecar read 'maybe' as false, the trainer as false, trainctl as false:
    # three silent guesses. Now each says which variable is wrong, in one line, and exits 2.
    environ = {**os.environ, "CHATTRAIN_INSECURE_NO_CURVE": "maybe", "CHATTRAIN_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, *program], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CHATTRAIN_INSECURE_NO_CURVE='maybe'" in lines[0], lines


def test_every_variable_of_every_program_is_in_the_env_example() -> None:
    from sidecar.config import OPTIONS as SIDECAR
    from trainctl.config import OPTIONS as TRAINCTL
    from trainer.config import OPTIONS as TRAINER

    example = (ROOT / ".env.example").read_text()
    missing = sorted({o.variable for o in (*TRAINER, *SIDECAR, *TRAINCTL) if o.variable not in example})
    assert missing == [], f"not in .env.example: {missing}"
