"""The HTML pages of ``banyan serve``: a project's experiments and one experiment's results.

Server-side HTML with inline SVG charts, no script and nothing from another
host (a strict ``CSP``). A browser gets in through a short-lived signed link
(``Signer.link``, printed by ``banyan experiments open ID``) that starts a
session bound to one project. The pages read only what two providers return
(``ProjectView``, ``ExperimentView``: the configuration and the analysis
``Results``); wiring them into a router::

    pages = Pages(Signer(secret), project=project_view, experiment=experiment_view)
    for method, pattern, handler in pages.routes():
        router.add(method, pattern, handler, auth=False)
    router.add("POST", "/api/v2/experiments/{id}/link", pages.link)  # with an API key
"""

from __future__ import annotations

from banyan.server.web._layout import CSP
from banyan.server.web._pages import Pages, ProjectProvider, ResultsProvider, html_response
from banyan.server.web._session import (
    LINK_TTL,
    OPEN_PATH,
    SESSION_TTL,
    Session,
    Signer,
    experiment_path,
    load_secret,
    project_path,
)
from banyan.server.web._views import ExperimentInfo, ExperimentView, Point, ProjectView

__all__ = [
    "CSP",
    "LINK_TTL",
    "OPEN_PATH",
    "SESSION_TTL",
    "ExperimentInfo",
    "ExperimentView",
    "Pages",
    "Point",
    "ProjectProvider",
    "ProjectView",
    "ResultsProvider",
    "Session",
    "Signer",
    "experiment_path",
    "html_response",
    "load_secret",
    "project_path",
]
