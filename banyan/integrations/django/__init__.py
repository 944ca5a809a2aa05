"""Django: an app that configures banyan from ``settings.BANYAN``.

::

    # settings.py
    INSTALLED_APPS = [..., "banyan.integrations.django"]
    BANYAN = {"atexit_timeout": 5.0}  # options of banyan.configure; BANYAN_* fill the rest

:class:`~banyan.integrations.django.apps.BanyanConfig` calls
``banyan.configure(**settings.BANYAN)`` once the apps are ready, in every
process (with gunicorn ``--preload``, in the master before the fork, which
banyan handles). Django has no shutdown signal: banyan's atexit hook shuts
the logger down when the process exits (gunicorn workers leave through
``sys.exit``), bounded by ``atexit_timeout``. Importing this package does
not import Django; Django imports :mod:`.apps` itself.
"""
