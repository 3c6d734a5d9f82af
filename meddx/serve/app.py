"""The HTTP service: POST /predict, GET /health, GET /model, the web page at /, the OpenAPI schema at /openapi.json;
with a token, /predict and /model answer only requests that carry it (Authorization: Bearer)."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from importlib.resources import files
from pathlib import Path

from fastapi import Depends, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from meddx.errors import MeddxError
from meddx.serve.microbatch import MicroBatcher
from meddx.serve.predictor import Predictor, UploadError
from meddx.serve.schema import Health, ModelInfo, Prediction, errors


class UploadLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, by Content-Length or while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send) -> None:
        body = json.dumps({"detail": f"upload larger than the limit of {self.max_bytes:,} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        seen, too_big = 0, False

        async def counted_receive():
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body without Content-Length: stop reading it
                    too_big = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not too_big:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_big:
                raise
        if too_big:
            await self._refuse(send)


def bearer_check(token: str | None):
    """A FastAPI dependency: nothing without a token; with one, 401 unless the request carries it."""
    scheme = HTTPBearer(auto_error=False, description="The token `meddx serve --token` (or MEDDX_TOKEN) was given.")

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        given = credentials.credentials if credentials else ""
        if token and not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong access token", headers={"WWW-Authenticate": "Bearer"})

    return check


def request_problem(errors: list[dict]) -> str:
    """A request FastAPI could not read, in one line: the upload's field named (curl -F image=@x.png got a list of
    dicts), anything else as where and what."""
    if any(tuple(e.get("loc", ())) == ("body", "file") and e.get("type") == "missing" for e in errors):
        return "no scan uploaded: send it as a multipart form field named 'file' (curl -F file=@scan.png URL/predict)"
    return "; ".join(f"{' '.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors)


def _one_line_errors(app: FastAPI) -> None:
    """meddx's errors and requests FastAPI cannot read answered with one line in `detail`, never a traceback."""

    @app.exception_handler(MeddxError)
    async def meddx_error(_request, exc: MeddxError):
        return JSONResponse({"detail": str(exc)}, status_code=getattr(exc, "status", 422))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request, exc: RequestValidationError):
        return JSONResponse({"detail": request_problem(exc.errors())}, status_code=422)


def create_app(
    path: str | Path,
    backend: str = "auto",
    max_upload_mb: float = 20.0,
    timeout_s: float = 30.0,
    threads: int = 2,
    token: str | None = None,
    max_batch: int = 32,
    batch_wait_ms: float = 5.0,
) -> FastAPI:
    """The FastAPI app for a package or run folder; decoding and inference run in a pool of `threads` threads, never
    on the event loop; concurrent requests' model calls are batched (up to `max_batch`, waiting `batch_wait_ms`)."""
    predictor = Predictor(path, backend, workers=threads)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="meddx-infer")
    batcher = MicroBatcher(predictor.probabilities, pool, max_batch, batch_wait_ms) if max_batch != 1 else None
    guarded = [Depends(bearer_check(token))] if token else []

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if batcher is not None:  # uvicorn has answered the requests it held (SIGTERM drains them first)
            await batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title=f"meddx: {predictor.path.name}",
        version="1",
        description="Diagnosis model served by meddx. Research and decision support only; not a medical device.",
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: nothing here reaches the internet
        redoc_url=None,
    )
    app.state.predictor, app.state.batcher = predictor, batcher
    app.add_middleware(UploadLimit, max_bytes=int(max_upload_mb * 1024 * 1024))

    _one_line_errors(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return files("meddx.serve").joinpath("page.html").read_text()

    @app.get("/health", response_model=Health, response_model_exclude_none=True)
    async def health() -> dict:
        """Liveness and what is loaded (only liveness when the service has a token)."""
        if token:
            return {"status": "ok"}
        batching = batcher.stats() if batcher else {"max_batch": 1}
        return {"status": "ok", "model": predictor.name, "backend": predictor.backend, "labels": predictor.labels,
                "threads": predictor.threads, "batching": batching}  # fmt: skip

    @app.get("/model", dependencies=guarded, response_model=ModelInfo, responses=errors(401))
    async def model() -> dict:
        """The model card, labels, operating point and the validation sensitivity/specificity table."""
        return predictor.info()

    _add_predict(app, _answerer(predictor, pool, batcher), timeout_s, guarded)
    return app


def _answerer(
    predictor: Predictor, pool: ThreadPoolExecutor, batcher: MicroBatcher | None
) -> Callable[..., Awaitable[dict]]:
    """The coroutine answering one upload: decoded in the pool (a bad upload fails alone, before any batch), the
    model call batched with other requests' (or alone in the pool), pictures drawn in the pool."""

    async def answer(data: bytes, cam: bool, label: str | None, image: bool) -> dict:
        loop = asyncio.get_running_loop()
        with batcher.preparing() if batcher else nullcontext():  # a batch may wait for this one
            prepared = await loop.run_in_executor(pool, predictor.prepare, data)
        x = prepared.x.numpy()
        p = await (batcher.submit(x) if batcher else loop.run_in_executor(pool, predictor.probabilities, x))
        if cam or image:
            return await loop.run_in_executor(pool, predictor.answer, prepared, p, cam, label, image)
        return predictor.answer(prepared, p)

    return answer


def _add_predict(app: FastAPI, answer: Callable[..., Awaitable[dict]], timeout_s: float, guarded: list) -> None:
    """POST /predict: the upload answered by `answer` off the event loop, bounded by `timeout_s` (504)."""

    @app.post(
        "/predict",
        dependencies=guarded,
        response_model=Prediction,
        response_model_exclude_none=True,
        responses=errors(400, 401, 413, 422, 504),
    )
    async def predict(
        file: UploadFile = File(..., description="PNG, JPEG, DICOM or NPY scan"),
        cam: bool = Query(False, description="Add the Grad-CAM overlay as base64 PNG"),
        label: str | None = Query(None, description="Label for the Grad-CAM map (default: the first)"),
        image: bool = Query(False, description="Add the decoded scan as base64 PNG (for display)"),
    ) -> dict:
        """Per-label probabilities, the decision at the operating point chosen on validation, and the input-domain
        check."""
        data = await file.read()
        try:
            result = await asyncio.wait_for(answer(data, cam, label, image), timeout_s)
        except asyncio.TimeoutError:
            return JSONResponse({"detail": f"inference took longer than {timeout_s:g} s"}, status_code=504)
        except UploadError as e:
            return JSONResponse({"detail": str(e)}, status_code=e.status)
        return {"filename": file.filename, **result}


def serve(
    path: str | Path, host: str = "127.0.0.1", port: int = 8000, read_timeout_s: float = 30.0, **settings
) -> None:
    """Run the service with uvicorn until interrupted; a request not received whole within `read_timeout_s` gets 408."""
    import uvicorn

    from meddx.serve.protocol import with_read_timeout

    app = create_app(path, **settings)
    for caveat in app.state.predictor.caveats:  # said once here, and on every answer and the page
        print(f"meddx: warning: {caveat}", file=sys.stderr)
    uvicorn.run(
        app, host=host, port=port, timeout_keep_alive=5, log_level="info", http=with_read_timeout(read_timeout_s)
    )
