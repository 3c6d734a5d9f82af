"""Micro-batching in the service, without a model: concurrent inputs share one call, each caller gets its own row,
a caller that gave up (504) is not computed, a failed call reaches every caller; ONNX Runtime's thread counts."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from meddx.errors import ConfigError
from meddx.serve.microbatch import MicroBatcher, session_threads


class Model:
    """Doubles its input and records the batch sizes it was called with."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        if self.fail:
            raise RuntimeError("model broke")
        return batch * 2


def test_concurrent_inputs_share_one_call_and_each_gets_its_row():
    model = Model()
    batcher = MicroBatcher(model, None, max_batch=8, wait_ms=60_000)  # full at 8: the long wait never runs out

    async def burst():
        return await asyncio.gather(*(batcher.submit(np.full((1, 2), i, np.float32)) for i in range(8)))

    rows = asyncio.run(burst())
    assert model.sizes == [8] and batcher.calls == 1 and batcher.rows == 8 and batcher.waiting == 0
    for i, row in enumerate(rows):
        assert row.shape == (1, 2) and np.all(row == 2 * i)


def test_inputs_queued_together_run_at_once_when_nothing_else_is_on_its_way():
    """All five are queued before the worker first runs; with no request being decoded, the long wait is skipped."""
    model = Model()
    batcher = MicroBatcher(model, None, max_batch=32, wait_ms=60_000)

    async def burst():
        return await asyncio.gather(*(batcher.submit(np.full((1, 3), i, np.float32)) for i in range(5)))

    assert [float(r[0, 0]) for r in asyncio.run(burst())] == [0, 2, 4, 6, 8]
    assert model.sizes == [5]


def test_a_batch_waits_for_a_request_being_decoded_and_not_for_one_that_failed():
    model = Model()
    batcher = MicroBatcher(model, None, max_batch=3, wait_ms=60_000)

    async def request(value: float, steps: int, fails: bool = False):
        with batcher.preparing():
            for _ in range(steps):  # decoding, in event-loop steps
                await asyncio.sleep(0)
            if fails:
                return "bad upload"
        return await batcher.submit(np.full((1, 1), value, np.float32))

    async def scenario():
        return await asyncio.gather(request(1, 0), request(2, 5), request(3, 10, fails=True))

    first, second, third = asyncio.run(scenario())
    assert (float(first[0, 0]), float(second[0, 0]), third) == (2, 4, "bad upload")
    assert model.sizes == [2]  # the first waited for the second; the failed third ended the wait (not 60 s)


def test_a_caller_that_gave_up_is_left_out_of_the_next_batch():
    entered, release = threading.Event(), threading.Event()
    model = Model()

    def blocking(batch: np.ndarray) -> np.ndarray:
        if not model.sizes:  # the first call holds the worker until the queued callers are settled
            entered.set()
            release.wait(30)
        return model(batch)

    batcher = MicroBatcher(blocking, None, max_batch=1, wait_ms=0)

    async def scenario():
        first = asyncio.create_task(batcher.submit(np.zeros((1, 1), np.float32)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 30)
        gone = asyncio.create_task(batcher.submit(np.ones((1, 1), np.float32)))
        kept = asyncio.create_task(batcher.submit(np.full((1, 1), 5, np.float32)))
        await asyncio.sleep(0)
        gone.cancel()  # as asyncio.wait_for does at the service's timeout
        release.set()
        return await first, await kept, await asyncio.gather(gone, return_exceptions=True)

    first, kept, (gone,) = asyncio.run(scenario())
    assert float(first[0, 0]) == 0 and float(kept[0, 0]) == 10 and isinstance(gone, asyncio.CancelledError)
    assert model.sizes == [1, 1]  # the cancelled input was never computed


def test_a_failed_call_reaches_every_caller_and_the_next_batch_still_runs():
    model = Model(fail=True)
    batcher = MicroBatcher(model, None, max_batch=4, wait_ms=60_000)

    async def burst():
        return await asyncio.gather(*(batcher.submit(np.zeros((1, 1))) for _ in range(4)), return_exceptions=True)

    answers = asyncio.run(burst())
    assert all(isinstance(a, RuntimeError) and "model broke" in str(a) for a in answers)
    model.fail = False
    assert [float(a[0, 0]) for a in asyncio.run(burst())] == [0, 0, 0, 0]
    assert model.sizes == [4, 4]


def test_settings_are_checked():
    for max_batch, wait_ms in ((0, 5), (4, -1)):
        with pytest.raises(ConfigError, match="max_batch must be at least 1"):
            MicroBatcher(Model(), None, max_batch, wait_ms)


@pytest.mark.parametrize(("cores", "workers", "intra"), [(2, 2, 1), (16, 4, 4), (2, 8, 1), (16, 1, 16), (8, 3, 2)])
def test_onnx_threads_share_the_cores_among_the_workers(cores, workers, intra):
    assert session_threads(workers, cores) == {"cores": cores, "workers": workers, "intra_op": intra, "inter_op": 1}
