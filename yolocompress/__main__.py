"""``python -m yolocompress``: see ``yolocompress.cli``."""
import sys

from .cli.main import main

sys.exit(main())
