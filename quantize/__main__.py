"""``python -m quantize RUN_DIR [export options]``: the int8 export alone (``python -m export --dtype int8``)."""
from __future__ import annotations

import sys

from export.__main__ import main as export_main


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--dtype" not in argv:
        argv += ["--dtype", "int8"]
    return export_main(argv)


if __name__ == "__main__":
    sys.exit(main())
