"""Dynamic micro-batching for the service: single inputs from concurrent requests queued for a few milliseconds and
run as one model call (as TorchServe's batch_size / max_batch_delay), each request handed its own row; plus the
ONNX Runtime thread counts that keep request workers from oversubscribing the cores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

import numpy as np

from meddx.errors import ConfigError
from meddx.machine import usable_cores


def session_threads(workers: int, cores: int | None = None) -> dict[str, int]:
    """ONNX Runtime's intra-op threads as the cores shared among `workers` request threads; inter-op 1."""
    cores = cores or usable_cores()
    return {"cores": cores, "workers": workers, "intra_op": max(1, cores // max(1, workers)), "inter_op": 1}


class MicroBatcher:
    """Collects (1, ...) inputs until `max_batch` are queued or `wait_ms` passed since the first (not waiting when no
    other request is being decoded), runs `model` once on them in `executor`, and answers each caller its own row."""

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], executor: Executor | None, max_batch: int = 32,
                 wait_ms: float = 5.0):  # fmt: skip
        if max_batch < 1 or wait_ms < 0:
            raise ConfigError(f"max_batch must be at least 1 and wait_ms at least 0, not {max_batch} and {wait_ms}")
        self.model, self.executor, self.max_batch, self.wait_s = model, executor, max_batch, wait_ms / 1000
        self.calls, self.rows, self.waiting = 0, 0, 0  # model calls made, inputs they answered, callers waiting
        self.coming = 0  # requests being decoded, whose inputs a batch may wait for
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def stats(self) -> dict[str, float]:
        """What /health reports: max_batch, wait_ms, model calls, the requests they answered, requests waiting."""
        return {"max_batch": self.max_batch, "wait_ms": self.wait_s * 1000, "model_calls": self.calls,
                "requests": self.rows, "waiting": self.waiting}  # fmt: skip

    def _start(self) -> asyncio.Queue:
        """The queue and its worker task on the running loop (started lazily: a test client may bring its own)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name="meddx-microbatch")
        assert self._queue is not None
        return self._queue

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's output row for one input of batch size 1; cancelling the caller drops it from the queue."""
        future = asyncio.get_running_loop().create_future()
        self._start().put_nowait((x, future))
        self.waiting += 1
        try:
            return await future
        finally:
            self.waiting -= 1

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Marks a request being decoded: a batch waits for more inputs only while some request is (else it runs)."""
        self.coming += 1
        try:
            yield
        finally:
            self.coming -= 1
            if not self.coming and self._queue is not None and self._loop is asyncio.get_running_loop():
                self._queue.put_nowait(None)  # wakes a batch waiting for an input that will not come

    async def _collect(self, queue: asyncio.Queue) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The next batch: the first queued input, then more until `max_batch`, the wait's end, or no request is
        being decoded (nothing more can come soon)."""
        batch: list = []
        deadline = None
        while len(batch) < self.max_batch:
            if queue.empty() and batch and not self.coming:
                break
            try:
                async with asyncio.timeout_at(deadline):
                    item = await queue.get()
            except TimeoutError:
                break
            if item is not None:
                batch.append(item)
                deadline = deadline or asyncio.get_running_loop().time() + self.wait_s
        return [(x, f) for x, f in batch if not f.done()]  # a caller that timed out (504) is not computed

    async def _work(self, queue: asyncio.Queue) -> None:
        """Forever: collect a batch, run it off the event loop, hand out the rows (or the error to every caller)."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            if not batch:
                continue
            try:
                out = await loop.run_in_executor(self.executor, self.model, np.concatenate([x for x, _ in batch]))
            except Exception as e:  # the model call failed: each request of the batch hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.calls, self.rows = self.calls + 1, self.rows + len(batch)
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(out[i : i + 1])

    async def close(self) -> None:
        """Stop the worker (the service's shutdown, after uvicorn has answered the requests it held)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
