"""The ASGI application: the route table, authentication and the lifespan."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from banyan._wire import (
    API_KEY_HEADER,
    BATCH_PATH,
    PROMPT_PATH,
    ROUTE_PATH,
    SINGLE_LOG_PATH,
    VALIDATE_PATH,
)
from banyan.server import _auth, _experiments, _legacy, _logs, _prompts, _results, _stats
from banyan.server._http import (
    HTTPError,
    Receive,
    Request,
    Response,
    Router,
    Scope,
    Send,
    error_response,
    json_response,
)
from banyan.server._limits import Inflight, Limits
from banyan.server.store import Conflict, NotFound, Store, StoreError, StoreUnavailable, open_store
from banyan.server.web import Pages

log = logging.getLogger("banyan.server")

#: glibc's mallopt parameters, and what the worker sets them to (see keep_freed_memory).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD, MMAP_THRESHOLD = 64 * 1024 * 1024, 32 * 1024 * 1024

#: Environment variables through which `banyan serve` configures its workers.
DB_ENV = "BANYAN_SERVER_DB"
LOG_LEVEL_ENV = "BANYAN_SERVER_LOG_LEVEL"
SECRET_DIR_ENV = "BANYAN_SECRET_DIR"


#: Seconds an instance trusts a cached key lookup: a key revoked through another
#: instance (or in the database) stops working everywhere within this bound (#17).
KEY_TTL = 1.0
#: StoreError -> HTTP status; StoreUnavailable adds Retry-After.
_STORE_STATUS: dict[type[StoreError], int] = {NotFound: 404, Conflict: 409, StoreUnavailable: 503}


@dataclass
class State:
    """What every handler shares: the store (opened at startup), the key cache, the ingest bound."""

    target: str
    inflight: Inflight = field(default_factory=Inflight)
    keys: dict[str, tuple[float, _auth.Principal]] = field(default_factory=dict)
    opened: Store | None = None

    @property
    def store(self) -> Store:
        """The store the lifespan startup opened."""
        assert self.opened is not None, "the store opens at lifespan startup"
        return self.opened

    async def authenticate(self, key: str) -> _auth.Principal:
        """The principal of an API key; 401 for a missing or unknown key."""
        _auth.check_key_text(key)
        digest = _auth.hash_key(key)
        now = time.monotonic()
        expires, principal = self.keys.get(digest, (0.0, None))
        if principal is None or expires <= now:
            principal = await self.store.principal(digest)
            if principal is None:
                self.keys.pop(digest, None)
                raise HTTPError(401, "invalid API key")
            self.keys[digest] = now + KEY_TTL, principal
        return principal


async def healthz(req: Request) -> Response:
    """GET /healthz: 200 while the server runs (no key needed)."""
    return json_response({"status": "ok"})


def routes(pages: Pages | None = None) -> Router:
    """Every endpoint of the reference server (docs/protocol.md lists them), and the pages."""
    r = Router()
    r.add("GET", "/healthz", healthz, auth=False)
    r.add("GET", VALIDATE_PATH, _auth.validate)
    r.add("GET", "/api/projects", _auth.list_projects)
    r.add("GET", "/api/projects/{id}", _auth.get_project)
    r.add("GET", PROMPT_PATH, _legacy.fetch_prompt)
    r.add("POST", SINGLE_LOG_PATH, _legacy.log_single)
    r.add("POST", ROUTE_PATH, _legacy.route, auth=False)
    r.add("GET", "/api/experiments/{id}", _experiments.get_experiment)
    r.add("GET", "/api/logs/cli/prompts", _legacy.cli_list)
    r.add("POST", "/api/logs/cli/prompts", _legacy.cli_create)
    r.add("POST", "/api/logs/cli/prompts/version", _legacy.cli_version)
    r.add("PUT", "/api/logs/cli/prompts/{id}", _legacy.cli_update)
    r.add("DELETE", "/api/logs/cli/prompts/{id}", _legacy.cli_delete)
    r.add("POST", BATCH_PATH, _logs.ingest_batch)
    r.add("GET", "/api/v2/logs", _logs.list_logs)
    r.add("GET", "/api/v2/logs/ids", _logs.list_ids)
    r.add("GET", "/api/v2/logs/summary", _logs.summary)
    r.add("GET", "/api/v2/projects", _auth.list_projects)
    r.add("POST", "/api/v2/projects", _auth.create_project)
    r.add("POST", "/api/v2/keys", _auth.create_key)
    r.add("POST", "/api/v2/keys/revoke", _auth.revoke_key)
    r.add("GET", "/api/v2/prompts", _prompts.list_prompts)
    r.add("POST", "/api/v2/prompts", _prompts.create_prompt)
    r.add("GET", "/api/v2/prompts/{name}", _prompts.get_prompt)
    r.add("PATCH", "/api/v2/prompts/{name}", _prompts.update_prompt)
    r.add("POST", "/api/v2/prompts/{name}/versions", _prompts.push_version)
    r.add("GET", "/api/v2/prompts/{name}/branches", _prompts.list_branches)
    r.add("POST", "/api/v2/prompts/{name}/branches", _prompts.create_branch)
    r.add("GET", "/api/v2/experiments", _experiments.list_experiments)
    r.add("POST", "/api/v2/experiments", _experiments.create_experiment)
    r.add("GET", "/api/v2/experiments/{id}", _experiments.get_experiment)
    r.add("POST", "/api/v2/experiments/{id}/start", _experiments.start_experiment)
    r.add("POST", "/api/v2/experiments/{id}/stop", _experiments.stop_experiment)
    r.add("POST", "/api/v2/experiments/{id}/ship", _experiments.ship_experiment)
    r.add("GET", "/api/v2/experiments/{id}/results", _results.experiment_results)
    r.add("GET", "/api/v2/stats", _stats.prompt_stats)
    if pages is not None:
        for method, pattern, handler in pages.routes():
            r.add(method, pattern, handler, auth=False)
        r.add("POST", "/api/v2/experiments/{id}/link", pages.link)
    return r


class App:
    """The ASGI callable."""

    def __init__(self, state: State, router: Router | None = None) -> None:
        self.state = state
        self.router = router or routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            response = await self._respond(Request(scope, receive, self.state))
            await _send(send, response)

    async def _respond(self, req: Request) -> Response:
        try:
            raw = req.scope.get("raw_path") or req.path.encode()
            route, req.params = self.router.match(req.method, raw.decode("latin-1"))
            if route.auth:
                await _auth.authorize(req, req.headers.get(API_KEY_HEADER.lower(), ""))
            return await route.handler(req)
        except HTTPError as exc:
            return error_response(exc)
        except StoreError as exc:
            return error_response(store_error(exc))
        except Exception:
            log.exception("unexpected error on %s %s", req.method, req.path)
            return error_response(HTTPError(500, "internal server error"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The pool and the SQLite threads belong to this worker and its event loop.
                try:
                    self.state.opened = await open_store(self.state.target)
                except StoreError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Waits for queued writes, so every acknowledged batch is on disk.
                await self.state.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def store_error(exc: StoreError) -> HTTPError:
    """The answer to a store's error: 404, 409, or 503 with Retry-After (never a 500)."""
    status = next((s for kind, s in _STORE_STATUS.items() if isinstance(exc, kind)), 500)
    if isinstance(exc, StoreUnavailable):
        log.warning("%s", exc)
        return HTTPError(status, "storage unavailable, retry later",
                         {"Retry-After": str(max(1, round(exc.retry_after)))})  # fmt: skip
    return HTTPError(status, str(exc))


async def _send(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of returning it to the OS.

    A batch allocates megabytes (its body, thousands of 500-character strings)
    and frees them; by default glibc unmaps or trims that memory, and the next
    batch faults it in afresh (about 1 us per 1.2 KB record of body on a VM).
    Returns False where the C library has no ``mallopt`` (not glibc).
    """
    with contextlib.suppress(OSError, AttributeError):
        mallopt = ctypes.CDLL(None).mallopt
        return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        )
    return False


def log_to_stderr(level: str) -> None:
    """Print the server's log records at ``level`` and above, tracebacks included, on stderr.

    The ``banyan`` logger's NullHandler keeps the client quiet, and granian
    configures only its own loggers: without this a 500 would leave no trace.
    """
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level.upper())


def create_app() -> App:
    """The application factory granian loads in each worker; configured by environment."""
    log_to_stderr(os.environ.get(LOG_LEVEL_ENV, "warning"))
    # A 10,000-record batch allocates tens of thousands of acyclic objects; the
    # default thresholds would run a collection every few hundred of them.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    keep_freed_memory()
    target = os.environ.get(DB_ENV, "banyan.db")
    return App(
        State(target, Inflight(Limits.from_environ())), routes(_results.pages(secret_of(target)))
    )


def secret_of(target: str) -> str:
    """Where the pages' signing secret lives: beside a SQLite file; for a URL, $BANYAN_SECRET_DIR.

    Instances sharing a PostgreSQL database must share this file for their links to agree.
    """
    if "://" not in target:
        return target
    return str(Path(os.environ.get(SECRET_DIR_ENV, ".")) / "banyan")
