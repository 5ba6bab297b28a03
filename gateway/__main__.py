"""``python3 -m gateway`` is ``ecg-gateway``."""

import sys

from gateway.cli import main

sys.exit(main())
