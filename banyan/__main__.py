"""``python -m banyan``: the same as the ``banyan`` command."""

from banyan._cli import main

raise SystemExit(main())
