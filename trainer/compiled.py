"""A trainer's compiled steps: each of the module's steps traced once (train, val, test), the train
call of several steps around the train step, and the iteration over a dataset, all under the
trainer's strategy when it has one (``trainer.distribute``)."""

from __future__ import annotations

from typing import Any

from trainer.distribute import DistributedMultiStep, distribute, distributed_train_step
from trainer.module import Module
from trainer.multistep import MultiStep, StepGate
from trainer.steps import StepFn, compile_eval_step, compile_train_step, run_evaluation


class CompiledSteps:
    def __init__(
        self,
        module: Module,
        optimizer: Any,
        gate: StepGate,
        strategy: Any = None,
        *,
        jit_compile: bool = False,
        worker_index: int = 0,
    ) -> None:
        self.module, self.optimizer, self.gate, self.strategy = module, optimizer, gate, strategy
        self.jit_compile = jit_compile
        self.worker_index = worker_index
        self.compiled: dict[str, StepFn] = {}
        self._train_call: MultiStep | DistributedMultiStep | None = None

    def train_call(self, dataset: Any) -> MultiStep | DistributedMultiStep:
        """The call of up to ``k`` steps (made once: later datasets share its trace)."""
        if self._train_call is None and self.strategy is not None:
            step = distributed_train_step(self.module, self.optimizer, self.strategy)
            self._train_call = DistributedMultiStep(
                step, self.gate, self.optimizer, self.strategy, own_index=self.worker_index
            )
        if self._train_call is None:
            self._train_call = MultiStep(self.step_fn("train", dataset), self.gate, self.optimizer)
        return self._train_call

    def iterate(self, dataset: Any) -> Any:
        """An iterator over ``dataset``'s batches, split across the replicas under a strategy."""
        return iter(distribute(self.strategy, dataset) if self.strategy is not None else dataset)

    def step_fn(self, kind: str, dataset: Any) -> StepFn:
        """``kind``: train, val or test."""
        if kind not in self.compiled:
            spec = dataset.element_spec
            if kind == "train":
                jit = self.jit_compile
                self.compiled[kind] = compile_train_step(self.module, self.optimizer, spec, jit_compile=jit)
            else:
                step = self.module.validation_step if kind == "val" else self.module.test_step
                self.compiled[kind] = compile_eval_step(step, spec)
        return self.compiled[kind]

    def evaluate(self, split: str, dataset: Any) -> dict[str, float]:
        return run_evaluation(self.step_fn(split, dataset), dataset)
