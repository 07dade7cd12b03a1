"""``python -m bench`` = ``python bench/run_adb.py``."""
import sys

from bench.cli import main

sys.exit(main())
