"""``python -m graphc.cli``: the ``graphc`` console script."""
import sys

from . import main

sys.exit(main())
