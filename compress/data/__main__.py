"""``python -m compress.data fetch NAME --dest data/`` (see :func:`compress.data.fetch.main`)."""
import sys

from compress.data.fetch import main

sys.exit(main())
