"""``python -m compress``: see :mod:`compress.cli`."""
from compress.cli import main

raise SystemExit(main())
