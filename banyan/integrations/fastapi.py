"""FastAPI: the Starlette integration, under the name users look for.

::

    from fastapi import FastAPI
    from banyan.integrations.fastapi import Lifespan

    app = FastAPI(lifespan=Lifespan(timeout=10))

See :mod:`banyan.integrations.starlette`; FastAPI is never imported here.
"""

from __future__ import annotations

from banyan.integrations.starlette import Lifespan, StickyContextMiddleware, sticky_context

__all__ = ["Lifespan", "StickyContextMiddleware", "sticky_context"]
