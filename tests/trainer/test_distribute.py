"""Training under tf.distribute, steered live: real trainer processes on 127.0.0.1, the seed CNN.

Mirrored on two logical CPU devices must learn as one device does; a two-worker
MultiWorkerMirroredStrategy job must apply a live ``lr`` change and a ``stop`` at the same step on
both workers (each worker's own JSONL says so), end with identical weights, and fail cleanly,
naming the worker, when one is killed; restarted, both workers resume from the checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes.processes import scratch_dir, spawn, stop
from tests.trainer.support import REPO_ROOT, TrainerProcess

pytestmark = pytest.mark.slow

START_WAIT_S = 180.0  # until a two-worker job trains: two TF start-ups and a rendezvous, loaded
EXIT_WAIT_S = 120.0  # a stopped job tests and saves before it exits; TF start-up is slow when loaded
DIGEST = re.compile(r"final weights digest ([0-9a-f]{64}) at step (\d+)")
JOB_ARGS = ["--param", "bs=32", "--param", "ti=10000000", "--param", "ds=5", "--steps-per-execution", "4"]


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


class Worker:
    """A non-chief ``python -m trainer`` of the job: no sockets, so watched through its log."""

    def __init__(self, workdir: Path, run_dir: Path, args: list[str], tf_config: str) -> None:
        self.log_path = workdir / f"worker-{time.monotonic_ns()}.log"
        args = ["--run-dir", str(run_dir), "--quiet", *args]
        self.popen = spawn("trainer", args, self.log_path, TF_CONFIG=tf_config)

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        stop(self.popen, grace_s=0)


class Job:
    """Worker 0 (the chief: a ``TrainerProcess`` with its sockets) and worker 1."""

    def __init__(self, workdir: Path, run_dir: Path, ports: list[int], args: list[str]) -> None:
        job = ["--strategy", "multiworker", *args]
        self.worker = Worker(workdir, run_dir, job, tf_config(ports, 1))
        try:
            self.chief = TrainerProcess(workdir, run_dir, job, env={"TF_CONFIG": tf_config(ports, 0)})
        except BaseException:  # a chief that never answered must not leave its worker training
            self.worker.close()
            raise

    def wait_exit(self) -> tuple[int | None, int | None]:
        """Both exit codes, each None if that process is still running after ``EXIT_WAIT_S`` in all."""
        deadline = time.monotonic() + EXIT_WAIT_S
        codes: list[int | None] = []
        for popen in (self.chief.popen, self.worker.popen):
            try:
                codes.append(popen.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes[0], codes[1]

    def close(self) -> None:
        self.worker.close()
        self.chief.close()


@pytest.fixture
def ports(free_tcp_endpoints: tuple[str, str]) -> list[int]:
    return [int(endpoint.rsplit(":", 1)[1]) for endpoint in free_tcp_endpoints]


@pytest.fixture
def job_dirs() -> Iterator[tuple[Path, Path]]:
    with scratch_dir("ct-") as workdir:
        yield workdir, workdir / "run"


def run_to_end(run_dir: Path, args: list[str]) -> tuple[dict[str, Any], str]:
    """A whole ``python -m trainer`` run; its final JSONL record and its log."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "trainer", "--run-dir", str(run_dir), "--quiet", "--autostart"]
    command += ["--exit-when-done", "--control", f"ipc://{run_dir}.c"]
    command += ["--metrics", f"ipc://{run_dir}.m", "--connection-file", f"{run_dir}.json", *args]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return jsonl(run_dir / "metrics.jsonl")[-1], done.stderr


def test_mirrored_on_two_logical_cpus_learns_as_one_device_does(
    job_dirs: tuple[Path, Path], mnist_path: Path | None
) -> None:
    if mnist_path is None:
        pytest.skip("needs the real MNIST (../shared/data/mnist.npz or CHATTRAIN_TEST_MNIST)")
    workdir, _ = job_dirs
    task = ["--data", str(mnist_path), "--data-limit", "1024", "--max-steps", "30", "--param", "bs=64"]
    one, _ = run_to_end(workdir / "one", task)
    two, log = run_to_end(workdir / "two", [*task, "--strategy", "mirrored", "--logical-devices", "2"])
    assert "strategy mirrored: 2 replicas in sync" in log
    assert one["kind"] == two["kind"] == "finished" and one["step"] == two["step"] == 30
    assert two["accuracy"] > 0.6, (one, two)  # chance is 0.1
    assert abs(two["accuracy"] - one["accuracy"]) < 0.12, (one, two)


def test_two_workers_apply_lr_and_stop_at_the_same_step_and_end_identical(
    job_dirs: tuple[Path, Path], ports: list[int], data_args: list[str]
) -> None:
    workdir, run_dir = job_dirs
    job = Job(workdir, run_dir, ports, [*data_args, *JOB_ARGS])
    feed = job.chief.subscribe()
    try:
        feed.wait("metrics.steps", timeout_s=START_WAIT_S)  # both workers are up: steps need both
        assert sorted(p.name for p in workdir.glob("*.json")) == ["connection.json"]
        at_step = job.chief.client.set_params({"lr": "0.0005"})["applies_at_step"]["learning_rate"]
        report = feed.wait("metrics.report", lambda b: b["step"] >= at_step + 4)
        assert report["lr"] == pytest.approx(0.0005)
        job.chief.client.pause()
        paused = feed.wait("event.paused")
        job.chief.client.evaluate()  # served while paused, by every worker at the paused step
        assert feed.wait("event.evaluated")["step"] == paused["step"]
        job.chief.client.resume()
        feed.wait("metrics.steps", lambda b: b["step"] > paused["step"])
        stop_at = job.chief.client.stop()["at_step"]
        stopped = feed.wait("event.stopped", timeout_s=EXIT_WAIT_S)
        assert stopped["step"] <= stop_at + 1
        assert job.wait_exit() == (0, 0), job.worker.log()[-3000:]
    finally:
        feed.close()
        job.close()
    chief_log, worker_log = (
        jsonl(run_dir / "metrics.jsonl"),
        jsonl(run_dir / "workers" / "1" / "metrics.jsonl"),
    )
    for records in (chief_log, worker_log):
        changes = [r for r in records if r["kind"] == "param_changed" and r["name"] == "learning_rate"]
        assert [c["applies_at_step"] for c in changes] == [at_step]
        assert [r["step"] for r in records if r["kind"] == "stopped"] == [stopped["step"]]
        assert [r["step"] for r in records if r["kind"] == "val"] == [paused["step"]]
    logs = (job.chief.log_path.read_text(), job.worker.log_path.read_text())
    digests = [DIGEST.search(text) for text in logs]
    assert all(digests) and digests[0].groups() == digests[1].groups()  # type: ignore[union-attr]
    assert digests[0].group(2) == str(stopped["step"])  # type: ignore[union-attr]


def test_a_killed_worker_fails_the_run_naming_it_and_a_restart_resumes(
    job_dirs: tuple[Path, Path], ports: list[int], data_args: list[str]
) -> None:
    workdir, run_dir = job_dirs
    args = [*data_args, *JOB_ARGS, "--checkpoint-every-steps", "8", "--collective-timeout", "30"]
    job = Job(workdir, run_dir, ports, args)
    feed = job.chief.subscribe()
    try:
        saved = feed.wait("event.checkpoint_saved", timeout_s=START_WAIT_S)
        job.worker.popen.send_signal(signal.SIGKILL)
        failed = feed.wait("event.failed", timeout_s=EXIT_WAIT_S)
        assert "worker 1" in failed["error"]["message"], failed["error"]
        assert job.wait_exit()[0] == 1
    finally:
        feed.close()
        job.close()
    again = Job(workdir, run_dir, ports, args)
    try:
        # TF start-up, the cluster's rendezvous and the restore took 55 s with 2 CPU burners beside it.
        resumed = again.chief.wait_status(lambda s: s["state"] == "running" and s["step"] > 0, START_WAIT_S)
        # Training past it means the worker restored too (the first exchange checks the steps agree).
        again.chief.wait_status(lambda s: s["step"] > resumed["step"], START_WAIT_S)
        assert resumed["step"] >= saved["step"]
        restored = re.compile(r"restored step (\d+) from .*/run/checkpoints/ckpt-\d+")
        steps = [restored.search(text) for text in (again.chief.log_path.read_text(), again.worker.log())]
        assert all(steps) and steps[0].group(1) == steps[1].group(1)  # type: ignore[union-attr]
        assert int(steps[0].group(1)) >= saved["step"]  # type: ignore[union-attr]
    finally:
        again.close()
