"""``python -m yolocompress``: see ``yolocompress.cli``."""
import sys

from .cli import main

sys.exit(main())
