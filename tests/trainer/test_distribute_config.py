"""The strategy's configuration: who is the chief, and bad values refused before anything starts.

No TensorFlow here except the decision vector's round trip (``trainer.peers``), which is numpy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from protocol import ParamSpec
from tests.trainer.support import REPO_ROOT
from trainer.cluster import WORKERS_DIR, worker_role

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def tf_config(index: int, kind: str = "worker", cluster: dict[str, list[str]] = CLUSTER) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


def test_task_0_of_worker_is_the_chief_and_the_others_log_apart(tmp_path: os.PathLike[str]) -> None:
    chief, other = worker_role("multiworker", tf_config(0)), worker_role("multiworker", tf_config(1))
    assert (chief.is_chief, chief.index, chief.num_workers) == (True, 0, 2)
    assert (other.is_chief, other.index) == (False, 1)
    assert chief.log_dir(tmp_path) == tmp_path
    assert other.log_dir(tmp_path) == tmp_path / WORKERS_DIR / "1"


def test_a_chief_task_is_the_chief_when_the_cluster_names_one() -> None:
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    assert worker_role("multiworker", tf_config(0, "chief", cluster)).is_chief
    assert not worker_role("multiworker", tf_config(0, "worker", cluster)).is_chief


def test_without_multiworker_tf_config_is_ignored() -> None:
    assert worker_role("mirrored", tf_config(1)).is_chief


@pytest.mark.parametrize(
    "environ, words",
    [
        ({}, "needs TF_CONFIG"),
        ({"TF_CONFIG": "{not json"}, "not a cluster and task"),
        (tf_config(5), "index 5"),
        (tf_config(0, "ps"), "worker or chief"),
    ],
)
def test_a_bad_tf_config_is_a_configuration_error(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        worker_role("multiworker", environ)


def run_trainer(args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env = {**inherited, "PYTHONPATH": str(REPO_ROOT), **environ}
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_multiworker_without_tf_config_exits_2_with_one_line() -> None:
    done = run_trainer(["--strategy", "multiworker"], {})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs TF_CONFIG" in lines[0]


def test_a_bad_strategy_from_the_environment_exits_2() -> None:
    done = run_trainer([], {"CHATTRAIN_STRATEGY": "ring"})
    assert (
        done.returncode == 2 and "CHATTRAIN_STRATEGY='ring': must be one of default, mirrored" in done.stderr
    )


def test_the_decision_vector_carries_every_param_type() -> None:
    from trainer.peers import decode, encode

    specs = (
        ParamSpec(name="lr", type="float", default=0.1),
        ParamSpec(name="bs", type="int", default=1),
        ParamSpec(name="aug", type="bool", default=False),
        ParamSpec(name="opt", type="str", default="adam"),
    )
    values = {"lr": 0.0005, "bs": 10**12, "aug": True, "opt": "sgd-动量"}
    assert decode(specs, encode(specs, values, [0.0, 0.0, 0.0, 0.0])) == values
