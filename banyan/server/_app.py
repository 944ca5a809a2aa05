"""The ASGI application: the route table, authentication and the lifespan."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
from dataclasses import dataclass, field

from banyan._wire import (
    API_KEY_HEADER,
    BATCH_PATH,
    PROMPT_PATH,
    ROUTE_PATH,
    SINGLE_LOG_PATH,
    VALIDATE_PATH,
)
from banyan.server import _auth, _experiments, _legacy, _logs, _prompts, _results, _stats
from banyan.server._db import Database
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
from banyan.server.web import Pages

log = logging.getLogger("banyan.server")

#: glibc's mallopt parameters, and what the worker sets them to (see keep_freed_memory).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD, MMAP_THRESHOLD = 64 * 1024 * 1024, 32 * 1024 * 1024

#: Environment variables through which `banyan serve` configures its workers.
DB_ENV = "BANYAN_SERVER_DB"
LOG_LEVEL_ENV = "BANYAN_SERVER_LOG_LEVEL"


@dataclass
class State:
    """What every handler shares: the database, the key cache, the ingest bound."""

    db: Database
    inflight: Inflight = field(default_factory=Inflight)
    keys: dict[str, _auth.Principal] = field(default_factory=dict)

    async def authenticate(self, key: str) -> _auth.Principal:
        """The principal of an API key; 401 for a missing or unknown key."""
        _auth.check_key_text(key)
        digest = _auth.hash_key(key)
        principal = self.keys.get(digest)
        if principal is None:
            principal = await self.db.read(_auth.lookup, digest)
            if principal is None:
                raise HTTPError(401, "invalid API key")
            self.keys[digest] = principal
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
        except Exception:
            log.exception("unexpected error on %s %s", req.method, req.path)
            return error_response(HTTPError(500, "internal server error"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Waits for queued writes, so every acknowledged batch is on disk.
                self.state.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


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
    db = Database(os.environ.get(DB_ENV, "banyan.db"))
    return App(State(db, Inflight(Limits.from_environ())), routes(_results.pages(db.path)))
