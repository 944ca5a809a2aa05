"""Hooks for servers, web frameworks, task queues and model SDKs; each imports its own lazily.

- :mod:`banyan.integrations.celery`: ``install()`` connects celery's worker
  signals, so prefork pool children (which billiard ends with ``os._exit``)
  flush before they go.
- :mod:`banyan.integrations.gunicorn`: ``post_fork`` and ``worker_exit`` for a
  gunicorn config file; optional, since forks are handled by banyan itself.
- :mod:`banyan.integrations.fastapi` (= ``.starlette``), ``.flask``,
  ``.django``: configure at start-up, shut down bounded at stop.
- :mod:`banyan.integrations.openai`, ``.anthropic``: ``wrap(client)`` logs
  each model call.

See docs/deployment.md.
"""
