"""``python3 -m center`` is ``ecg-center``."""

import sys

from center.cli import main

sys.exit(main())
