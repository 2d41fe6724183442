"""The callback contract: callbacks ask through the trainer's view (``request_stop``,
``request_checkpoint``, ``fail``) and the loop acts after every callback's hook; the trainer builds
nothing until ``setup`` (which ``fit`` calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow")

from protocol import RequestError  # noqa: E402
from tests.trainer.ct_test_modules import TinyModule  # noqa: E402
from trainer.callbacks.base import Callback, Logs  # noqa: E402
from trainer.callbacks.view import Requests, TrainerView  # noqa: E402
from trainer.trainer import Trainer  # noqa: E402

BATCH = 32
K = 8  # steps per compiled call


def make_trainer(run_dir: Path, module: Any, *callbacks: Callback, steps: int = 12, **kwargs: Any) -> Trainer:
    params = {"bs": BATCH, "ti": BATCH * steps, "ds": 100}
    return Trainer(
        module, params=params, callbacks=list(callbacks), run_dir=run_dir, progress=False, **kwargs
    )


class StopAt(Callback):
    """Asks for a stop after step ``at``; names that step as a boundary (the documented way to act
    at an exact step when a call runs several)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def next_boundary(self, trainer: TrainerView) -> int | None:
        return self.at if trainer.step < self.at else None

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step == self.at:
            trainer.request_stop()


class Heard(Callback):
    """Records the steps each hook ran at, and the error ``on_exception`` was told of."""

    def __init__(self) -> None:
        self.steps: dict[str, list[int]] = {}
        self.error: dict[str, Any] | None = None

    def _heard(self, hook: str, trainer: TrainerView) -> None:
        self.steps.setdefault(hook, []).append(trainer.step)

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._heard("on_step_end", trainer)

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        self._heard("on_checkpoint", trainer)
        self.steps.setdefault("checkpoint_step", []).append(trainer.last_checkpoint_step or -1)

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self._heard("on_exception", trainer)
        self.error = dict(trainer.error_info or {})


@pytest.mark.parametrize("per_call", [1, K])
def test_a_stop_requested_in_on_step_end_ends_the_run_at_that_step(tmp_path: Path, per_call: int) -> None:
    heard = Heard()
    trainer = make_trainer(
        tmp_path, TinyModule(synthetic=512), StopAt(5), heard, steps_per_execution=per_call
    )
    assert trainer.fit().outcome == "stopped"
    assert trainer.step == 5 and heard.steps["on_step_end"] == [1, 2, 3, 4, 5]
    assert int(trainer.optimizer.iterations.numpy()) == 5  # no step after it ran in the graph either
    assert trainer.last_checkpoint_step == 5


class Failing(Callback):
    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step == 3:
            trainer.fail(LookupError("the callback failed the run on purpose"))


def test_fail_fails_the_run_with_that_error_and_on_exception_is_heard(tmp_path: Path) -> None:
    heard = Heard()
    trainer = make_trainer(tmp_path, TinyModule(synthetic=512), Failing(), heard)
    with pytest.raises(LookupError, match="on purpose"):
        trainer.fit()
    # The hook ran on every callback (the one after the failing one too), then the loop raised.
    assert heard.steps["on_step_end"] == [1, 2, 3] and heard.steps["on_exception"] == [3]
    assert heard.error is not None and heard.error["type"] == "LookupError"
    assert "on purpose" in heard.error["message"]


class CheckpointAt(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_boundary(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step == self.at:
            trainer.request_checkpoint()


def test_request_checkpoint_writes_a_checkpoint_at_that_boundary(tmp_path: Path) -> None:
    heard = Heard()
    trainer = make_trainer(tmp_path, TinyModule(synthetic=512), CheckpointAt(3), heard, steps=6)
    assert trainer.fit().outcome == "finished"
    assert (tmp_path / "checkpoints" / "ckpt-3.index").exists()
    assert heard.steps["checkpoint_step"] == [3, 6]  # that boundary's, then the final one


class RecordingPeers:
    """A stand-in for ``trainer.peers.PeerSync``: what the requests were when the loop called it."""

    def __init__(self) -> None:
        self.synced: list[tuple[int, Requests]] = []
        self.finished_at: int | None = None

    def sync(self, trainer: Trainer) -> None:
        self.synced.append((trainer.step, trainer.pending_requests()))

    def hold_tick(self, trainer: Trainer) -> None:
        raise AssertionError("nothing holds in this run")

    def finished(self, trainer: Trainer) -> None:
        self.finished_at = trainer.step


class StopOnBoundary(Callback):
    def on_boundary(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step == 4:
            trainer.request_stop()
            trainer.request_evaluation()


def test_the_peers_see_every_callbacks_requests_of_the_same_boundary(tmp_path: Path) -> None:
    """Listed last, the callback still asks before the exchange: the loop calls the peers after
    the on_boundary hooks, not at a place in the list."""
    peers = RecordingPeers()
    trainer = make_trainer(tmp_path, TinyModule(synthetic=512), StopOnBoundary(), peers=peers)
    assert trainer.fit().outcome == "stopped" and trainer.step == 4
    assert [step for step, _ in peers.synced] == [0, 1, 2, 3, 4]  # the start, then every boundary
    step, requests = peers.synced[-1]
    assert requests.stop and requests.evaluate and not requests.checkpoint
    assert not any(r.stop for _, r in peers.synced[:-1])
    assert peers.finished_at == 4 and len(trainer.history.validation) == 1


class CountingModule(TinyModule):
    """TinyModule that counts its set-up and optimizer calls."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.setups = self.optimizers = 0

    def setup(self) -> None:
        self.setups += 1
        super().setup()

    def configure_optimizers(self, params: Any) -> Any:
        self.optimizers += 1
        return super().configure_optimizers(params)


def test_constructing_a_trainer_builds_nothing_until_setup(tmp_path: Path) -> None:
    module = CountingModule(synthetic=256)
    trainer = make_trainer(tmp_path, module, steps=4)
    assert (module.setups, module.optimizers) == (0, 0)
    assert trainer.specs and trainer.params["batch_size"] == BATCH  # the params are checked already
    assert not (tmp_path / "checkpoints").exists()  # no CheckpointStore yet
    trainer.setup()
    trainer.setup()
    assert (module.setups, module.optimizers) == (1, 1)
    assert trainer.fit().outcome == "finished"
    assert (module.setups, module.optimizers) == (1, 1)


def test_fit_sets_up_a_trainer_that_was_only_constructed(tmp_path: Path) -> None:
    module = CountingModule(synthetic=256)
    trainer = make_trainer(tmp_path, module, steps=4)
    assert trainer.fit().outcome == "finished" and trainer.step == 4
    assert (module.setups, module.optimizers) == (1, 1)


def test_a_bad_param_still_fails_at_construction(tmp_path: Path) -> None:
    module = CountingModule(synthetic=256)
    with pytest.raises(RequestError, match="batch_size"):
        Trainer(module, params={"bs": -1}, run_dir=tmp_path, progress=False)
    assert module.setups == 0
