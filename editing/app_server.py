"""The web side of the browser editor: a Starlette app over one `editing.app_session.EditorSession`.

Routes (JSON unless said; uploads are the raw file as the request body):
- ``GET /``: the page (editing/app_static/index.html with app.js and app.css; nothing from elsewhere);
- ``GET /api/state``; ``POST /api/face`` ``{"seed": 7}`` or ``{"random": true}``; ``POST /api/face/upload?name=...``
  (a latent .npz); ``POST /api/regressor`` ``{"path": ...}``: each answers the session's state;
- ``POST /api/edit`` ``{"changes": {...}, "editor": "preview" | <editor>, "detect": true}``: the view as
  ``{"image": "data:image/png;base64,...", "q": {...}, "detected": ..., "editor": ..., "seconds": ...}``;
- ``POST /api/transfer?parts=rotation,expression`` (a photo): ``{"changes": {...}}``, slider values to set;
- ``GET /api/download/edited.npz`` and ``GET /api/download/edit.png``: the latest edit.
Bad input answers status 400 with ``{"error": message}``; the page shows it and the server keeps serving.
A Content-Security-Policy lets the page load only from its own origin.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.errors import UserError
from editing.app_session import EditorSession, encode_image

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'",
    "Cache-Control": "no-store",
}


def create_app(session: EditorSession, max_upload_bytes: int = 20 * 2**20) -> Starlette:
    """The Starlette app serving `session`; requests run one at a time (the session is not thread-safe)."""
    lock = threading.Lock()

    async def call(work: Callable[[], Any]) -> Any:
        def locked() -> Any:
            with lock:
                return work()

        return await run_in_threadpool(locked)

    async def answer(work: Callable[[], Any]) -> Response:
        return JSONResponse(await call(work), headers=SECURITY_HEADERS)

    async def body_of(request: Request) -> bytes:
        data = await request.body()
        if len(data) > max_upload_bytes:
            raise UserError(
                f"the upload has {len(data) / 2**20:.1f} MiB; the app takes at most {max_upload_bytes / 2**20:.0f} MiB"
            )
        if not data:
            raise UserError("the upload is empty; choose a file")
        return data

    async def json_of(request: Request) -> dict[str, Any]:
        try:
            payload = await request.json()
        except ValueError as error:
            raise UserError("the request is not JSON") from error
        if not isinstance(payload, dict):
            raise UserError("the request must be a JSON object")
        return payload

    async def page(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in STATIC_FILES:
            return Response("not found", status_code=404)
        text = resources.files("editing").joinpath("app_static", name).read_bytes()
        return Response(text, media_type=STATIC_FILES[name], headers=SECURITY_HEADERS)

    async def state(request: Request) -> Response:
        return await answer(session.state)

    async def face(request: Request) -> Response:
        payload = await json_of(request)
        if payload.get("random"):
            return await answer(session.choose_random)
        return await answer(lambda: session.choose_seed(payload.get("seed")))

    async def upload_face(request: Request) -> Response:
        data = await body_of(request)
        return await answer(lambda: session.choose_latent_file(data, request.query_params.get("name", "upload.npz")))

    async def regressor(request: Request) -> Response:
        payload = await json_of(request)
        return await answer(lambda: session.use_regressor_file(str(payload.get("path", ""))))

    async def edit(request: Request) -> Response:
        payload = await json_of(request)
        changes = payload.get("changes") or {}
        editor = str(payload.get("editor", "preview"))
        detect = bool(payload.get("detect", True))

        def work() -> dict[str, Any]:
            if not isinstance(changes, dict):
                raise UserError("changes must map slider names to values")
            start = time.perf_counter()
            view = session.preview(changes, detect) if editor == "preview" else session.refine(changes, editor, detect)
            names = session.regressor.nrsfm.layout.names()
            return {
                "image": "data:image/png;base64," + base64.b64encode(encode_image(view.grid)).decode("ascii"),
                "q": dict(zip(names, view.q[0].tolist())),
                "detected": view.detected,
                "editor": view.editor,
                "note": session.note,
                "seconds": time.perf_counter() - start,
            }

        return await answer(work)

    async def transfer(request: Request) -> Response:
        data = await body_of(request)
        parts = [part for part in request.query_params.get("parts", "rotation,expression").split(",") if part]
        return await answer(lambda: {"changes": session.transfer_from_photo(data, parts)})

    async def download(request: Request) -> Response:
        name = request.path_params["name"]
        makers = {
            "edited.npz": (session.edited_npz, "application/octet-stream"),
            "edit.png": (session.edit_png, "image/png"),
        }
        if name not in makers:
            return Response("not found", status_code=404)
        make, media_type = makers[name]
        data = await call(make)
        return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    posts = {
        "/api/face": face,
        "/api/face/upload": upload_face,
        "/api/regressor": regressor,
        "/api/edit": edit,
        "/api/transfer": transfer,
    }
    routes = [
        Route("/", page),
        Route("/static/{name}", page),
        Route("/api/state", guarded(state)),
        Route("/api/download/{name}", guarded(download)),
        *(Route(path, guarded(handler), methods=["POST"]) for path, handler in posts.items()),
    ]
    return Starlette(routes=routes)


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """`handler` answering bad input (UserError, or the ValueError of an input check) with status 400 and
    ``{"error": message}``, which the page shows."""

    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except (UserError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400, headers=SECURITY_HEADERS)

    return handle


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_in_background(
    app: Starlette, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0
) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread (on a free port when `port` is None); yields its URL, stops it after."""
    import uvicorn

    port = free_port(host) if port is None else port
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the app server did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
