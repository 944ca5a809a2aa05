"""Hooks for process-based servers and task queues; each imports its framework lazily.

- :mod:`banyan.integrations.celery`: ``install()`` connects celery's worker
  signals, so prefork pool children (which billiard ends with ``os._exit``)
  flush before they go.
- :mod:`banyan.integrations.gunicorn`: ``post_fork`` and ``worker_exit`` for a
  gunicorn config file; optional, since forks are handled by banyan itself.

See docs/deployment.md.
"""
