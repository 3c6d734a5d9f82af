"""The service around the model: the web page in Chromium, Grad-CAM hooks, operating points, the bearer token,
504s, batched requests, ONNX Runtime threads and shutdown."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_serve import _post

from meddx.serve import create_app

from conftest import ARTIFACTS, REPO, wait_for_health


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_page_in_chromium(package, scans):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt)")
    import httpx
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "meddx", "serve", str(package), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    try:
        wait_for_health(port, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
            )
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.querySelector('#label').options.length > 0")
            page.set_input_files("#file", str(scans[0]))
            page.wait_for_selector("#result:not([hidden])", timeout=60000)
            page.wait_for_function("document.querySelector('#cam').naturalWidth > 0")
            prob = float(page.locator("#probs tbody td.p").first.inner_text())
            assert 0.0 <= prob <= 1.0
            assert page.eval_on_selector("#scan", "e => e.naturalWidth") > 50
            model = httpx.get(f"http://127.0.0.1:{port}/model").json()
            threshold = model["thresholds"]["PD"]  # the slider opens at the operating point itself, not snapped
            assert page.eval_on_selector("#threshold", "e => Number(e.value)") == pytest.approx(threshold, abs=1e-12)
            rates = model["val_rates"]["labels"]["PD"]
            sens = np.mean(np.asarray(rates["positives"]) >= threshold)
            spec = np.mean(np.asarray(rates["negatives"]) < threshold)
            assert page.locator("#sens").inner_text() == f"{sens:.3f}"
            assert page.locator("#spec").inner_text() == f"{spec:.3f}"
            low = (page.locator("#sens").inner_text(), page.locator("#spec").inner_text())
            for t, word in ((0.02, "positive"), (0.999, "negative")):  # one truth: sentence, table and marker agree
                page.eval_on_selector("#threshold", f"e => {{ e.value = {t}; e.dispatchEvent(new Event('input')); }}")
                if word == "positive" and prob < t or word == "negative" and prob >= t:
                    continue
                assert page.locator("#decision").inner_text().startswith(word)
                assert page.locator("#probs tbody td.decision").first.inner_text() == word
                marker = page.eval_on_selector("#probs tbody .bar span", "e => e.style.left")
                assert float(marker.rstrip("%")) == pytest.approx(100 * t)
            high = (page.locator("#sens").inner_text(), page.locator("#spec").inner_text())
            assert float(high[0]) <= float(low[0]) and float(high[1]) >= float(low[1]) and high != low
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    assert (ARTIFACTS / "serve.png").stat().st_size > 20000


def test_grad_cam_hooks_stay_off_the_prediction_model(datscan_run, scans):
    """grad-cam hooks its model for good; the service's predictions must run on a model without those hooks."""
    app = create_app(datscan_run.path, backend="pytorch")
    predictor = app.state.predictor
    with TestClient(app) as c:
        before = _post(c, scans[1].read_bytes()).json()["probabilities"]
        assert _post(c, scans[0].read_bytes(), cam=True).status_code == 200
        for _ in range(3):
            assert _post(c, scans[1].read_bytes()).json()["probabilities"] == before
    assert not any(m._forward_hooks for m in predictor.torch_model.modules())
    assert any(m._forward_hooks for m in predictor.explainer.model.modules())
    assert len(predictor.explainer.cam.activations_and_grads.activations) == 1  # the map's own forward only


def test_operating_point_without_an_evaluation(datscan_run, package, tmp_path):
    """A run never evaluated gets its threshold chosen on val now; a package without one says it uses 0.5."""
    from meddx.evaluation.operating import choose_threshold
    from meddx.serve import Predictor

    run_copy = tmp_path / "run"
    shutil.copytree(datscan_run.path, run_copy)
    (run_copy / "metrics.json").unlink()
    predictor = Predictor(run_copy)
    val = datscan_run.predictions("val")
    assert predictor.rule == "Youden's J"
    assert predictor.thresholds["PD"] == choose_threshold(val["PD"].to_numpy(), val["p_PD"].to_numpy(), "youden")
    pkg_copy = tmp_path / "pkg"
    shutil.copytree(package, pkg_copy)
    (pkg_copy / "thresholds.json").write_text("{}")
    bare = Predictor(pkg_copy)
    assert bare.thresholds == {"PD": 0.5} and "no operating point chosen" in bare.rule


def test_an_optional_bearer_token_guards_predict_and_model(package, scans):
    """`meddx serve --token T` (or MEDDX_TOKEN): /predict and /model answer 401 without the token or with a wrong
    one, /health says only that it is alive, and the schema declares the scheme."""
    with TestClient(create_app(package, token="s3cret-token")) as c:
        files = {"file": ("scan.png", scans[0].read_bytes(), "application/octet-stream")}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
            r = c.post("/predict", files=files, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
            assert c.get("/model", headers=headers).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert c.post("/predict", files=files, headers=right).status_code == 200
        assert c.get("/model", headers=right).json()["labels"] == ["PD"]
        assert c.get("/health").json() == {"status": "ok"}
        assert "HTTPBearer" in c.get("/openapi.json").json()["components"]["securitySchemes"]


def test_a_504_bounds_the_work_it_abandons(package, scans):
    """Requests that time out answer 504; work not yet started is cancelled, so abandoned inference never exceeds
    the pool's threads (2) instead of running every queued request to the end."""
    import asyncio

    import httpx

    app = create_app(package, timeout_s=0.2, threads=2)
    started = []

    def slow(data):
        started.append(time.perf_counter())
        time.sleep(1.0)
        return {}

    app.state.predictor.prepare = slow

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            files = {"file": ("scan.png", scans[0].read_bytes(), "image/png")}
            return await asyncio.gather(*(c.post("/predict", files=files) for _ in range(10)))

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [504] * 10 and "longer than 0.2 s" in answers[0].json()["detail"]
    time.sleep(1.5)  # anything still queued would have started by now
    assert len(started) <= 2, len(started)


def _burst(app, uploads: list[bytes]) -> list:
    """All uploads posted at once to the app in this process (no lifespan: the batcher starts by itself), then
    /health."""
    import asyncio

    import httpx

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=300) as c:
            posts = (c.post("/predict", files={"file": ("s.png", u, "image/png")}) for u in uploads)
            return [*await asyncio.gather(*posts), await c.get("/health")]

    return asyncio.run(run())


def test_batched_answers_equal_unbatched_ones_and_a_bad_upload_fails_alone(package, scans):
    """Six scans and one broken upload at once: the six share one model call (all seven are being decoded before the
    first reaches the batcher, which is full at six), each gets the probability it gets alone, the broken one a 422."""
    with TestClient(create_app(package, max_batch=1)) as c:
        assert c.get("/health").json()["batching"] == {"max_batch": 1}
        alone = [_post(c, s.read_bytes()).json()["probabilities"]["PD"] for s in scans]
    app = create_app(package, timeout_s=300, threads=8, max_batch=len(scans), batch_wait_ms=120_000)
    barrier, real = threading.Barrier(len(scans) + 1, timeout=120), app.state.predictor.prepare

    def together(data: bytes):  # every upload is being decoded before any reaches the batcher
        barrier.wait()
        return real(data)

    app.state.predictor.prepare = together
    uploads = [s.read_bytes() for s in scans]
    *answers, health = _burst(app, uploads[:3] + [uploads[0][:40]] + uploads[3:])
    bad = answers.pop(3)
    assert bad.status_code == 422 and "PNG" in bad.json()["detail"], bad.text
    assert [r.status_code for r in answers] == [200] * len(scans), [r.text for r in answers]
    together = [r.json()["probabilities"]["PD"] for r in answers]
    assert together == pytest.approx(alone, abs=1e-6)
    batching = health.json()["batching"]
    assert (batching["model_calls"], batching["requests"], batching["waiting"]) == (1, len(scans), 0)


def test_onnx_threads_follow_the_cores_and_the_workers(package, monkeypatch):
    """ONNX Runtime's intra-op threads are the usable cores shared among the request threads; /health says so."""
    from meddx.serve import microbatch

    assert microbatch.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(microbatch, "usable_cores", lambda: 8)
    app = create_app(package, threads=4)
    options = app.state.predictor._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    with TestClient(app) as c:
        health = c.get("/health").json()
    assert health["threads"] == {"cores": 8, "workers": 4, "intra_op": 2, "inter_op": 1}
    assert health["batching"]["max_batch"] == 32 and health["batching"]["wait_ms"] == 5


def test_shutdown_answers_the_requests_it_holds(package, scans, monkeypatch):
    """uvicorn's graceful shutdown (what SIGTERM starts) while six requests are being decoded: once the listener is
    closed they go on through the batcher, and all six are answered with 200 before the server stops."""
    import asyncio

    import httpx
    import uvicorn

    app = create_app(package, threads=8)
    predictor, entered, release = app.state.predictor, [], threading.Event()
    real = predictor.prepare

    def held(data: bytes):
        entered.append(data)
        release.wait(120)
        return real(data)

    monkeypatch.setattr(predictor, "prepare", held)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)  # not the main thread: uvicorn leaves the signals alone
    thread.start()

    def until(condition, what: str) -> None:
        for _ in range(6000):
            if condition():
                return
            time.sleep(0.02)
        pytest.fail(f"waited two minutes for {what}")

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return True
        except OSError:
            return False

    async def run():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            posts = [asyncio.create_task(c.post("/predict", files={"file": ("s.png", s.read_bytes())})) for s in scans]
            await asyncio.to_thread(until, lambda: len(entered) == len(scans), "six requests to be held")
            server.should_exit = True  # what uvicorn's SIGTERM handler does
            await asyncio.to_thread(until, lambda: not listening(), "the listener to close")
            release.set()
            return await asyncio.gather(*posts, return_exceptions=True)

    try:
        until(lambda: server.started, "the server to start")
        answers = asyncio.run(run())
        assert [getattr(r, "status_code", r) for r in answers] == [200] * len(scans)
        thread.join(60)
        assert not thread.is_alive() and app.state.batcher.rows == len(scans)
    finally:
        release.set()
        server.should_exit = True
        thread.join(60)
