"""The page handlers: open a signed link, list a project's experiments, show results.

The server wires them with ``Pages.routes()`` (no API key: a page is reached
through its session cookie) and two providers that read its storage. Every
handler looks the session up for the project named in the path, and passes
only that project's id on, so a page never shows another project's data.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from banyan.server._http import Handler, HTTPError, Request, Response, json_response
from banyan.server.web import _render
from banyan.server.web._layout import HEADERS, page
from banyan.server.web._markup import h
from banyan.server.web._session import (
    LINK_TTL,
    OPEN_PATH,
    PAGES,
    Session,
    Signer,
    cookie_value,
    experiment_path,
    session_cookie,
)
from banyan.server.web._views import ExperimentView, ProjectView

#: ``(request, project_id) -> the project's experiments``, or None for no such project.
ProjectProvider = Callable[[Request, str], Awaitable[ProjectView | None]]
#: ``(request, project_id, experiment_id) -> the page's data``, or None when the
#: project has no such experiment. It must look the experiment up in that project only.
ResultsProvider = Callable[[Request, str, str], Awaitable[ExperimentView | None]]

_HTML = "text/html; charset=utf-8"
_EXPIRED = (
    "This link or session has expired, or belongs to another project.",
    "Run `banyan experiments open ID` for a new link.",
)
_MAX_FORM = 64 * 1024


def html_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A page with the strict security headers of every page."""
    return Response(status, body, {**HEADERS, **(headers or {})}, content_type=_HTML)


def _error_page(status: int, title: str, text: str) -> Response:
    body = page(title, h("span", None, title), h("h1", None, title), h("p", None, text))
    return html_response(body, status)


def _forward(location: str) -> bytes:
    # Not a 303: a SameSite=Strict cookie is withheld on every redirect of a navigation that
    # another site started (a link clicked in a chat), but sent on this page's own refresh.
    refresh = h("meta", {"http_equiv": "refresh", "content": f"0; url={location}"})
    link = h("p", None, h("a", {"href": location}, "Open the results"))
    return page("Opening the results", h("span", None, "opening"), link, head=refresh)


def _origin(req: Request) -> str:
    return f"{req.scope.get('scheme', 'http')}://{req.headers.get('host', '')}"


class Pages:
    """The HTML pages of ``banyan serve`` over a signer and two providers."""

    def __init__(
        self,
        signer: Signer,
        *,
        project: ProjectProvider,
        experiment: ResultsProvider,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer, self.clock = signer, clock
        self._project, self._experiment = project, experiment

    def routes(self) -> list[tuple[str, str, Handler]]:
        """``(method, pattern, handler)`` for each page; add them with ``auth=False``."""
        base = f"{PAGES}/projects/{{project}}/experiments"
        return [
            ("GET", OPEN_PATH, self.open),
            ("GET", base, self.list_experiments),
            ("GET", f"{base}/{{id}}", self.experiment),
        ]

    def session(self, req: Request) -> Session | None:
        """The request's session for the project in its path, if it has a valid one."""
        value = cookie_value(req.headers.get("cookie", ""))
        project = req.params.get("project", "")
        return None if value is None else self.signer.verify_session(value, project, self.clock())

    async def open(self, req: Request) -> Response:
        """GET /ui/open?...: a valid signed link starts a session and forwards to its page."""
        found = self.signer.verify_link(req.query, self.clock())
        if found is None:
            return _error_page(401, "Link expired", " ".join(_EXPIRED))
        project, experiment = found
        value = self.signer.new_session(project, self.clock())
        cookie = session_cookie(value, project, secure=req.scope.get("scheme") == "https")
        return html_response(
            _forward(experiment_path(project, experiment)), 200, {"set-cookie": cookie}
        )

    async def list_experiments(self, req: Request) -> Response:
        """GET /ui/projects/{project}/experiments: the project's experiments."""
        if self.session(req) is None:
            return _error_page(401, "Session expired", " ".join(_EXPIRED))
        view = await self._project(req, req.params["project"])
        if view is None:
            return _error_page(404, "Not found", "There is no such project.")
        return html_response(_render.list_page(view))

    async def experiment(self, req: Request) -> Response:
        """GET /ui/projects/{project}/experiments/{id}: one experiment's results."""
        if self.session(req) is None:
            return _error_page(401, "Session expired", " ".join(_EXPIRED))
        view = await self._experiment(req, req.params["project"], req.params["id"])
        if view is None:
            return _error_page(404, "Not found", "This project has no such experiment.")
        return html_response(_render.results_page(view, req.params["project"]))

    async def link(self, req: Request) -> Response:
        """POST /api/v2/experiments/{id}/link (with an API key): a signed link to its page.

        The link is bound to the key's project and points at the host the request
        was sent to; ``banyan experiments open ID`` prints it.
        """
        try:
            url = self.signer.link(_origin(req), req.project_id, req.params["id"], self.clock())
        except ValueError:
            raise HTTPError(400, f"invalid experiment id {req.params['id']!r}") from None
        return json_response({"url": url, "expires_in": LINK_TTL})

    async def check_post(self, req: Request) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST from this server's own page; 403 otherwise.

        A state-changing form (such as shipping a variant) includes a hidden
        ``csrf`` field with ``signer.csrf_token(session)``.
        """
        session = self.session(req)
        form = dict(parse_qsl((await req.body(_MAX_FORM)).decode("utf-8", "replace")))
        origin = req.headers.get("origin")
        if session is None or not self.signer.check_post(session, form, origin, _origin(req)):
            raise HTTPError(403, "this form needs a valid session and must come from this site")
        return session, form
