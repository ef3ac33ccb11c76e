"""``python -m dust3r.utils.checkpoint convert IN.pth OUT_DIR`` / ``info PATH``."""
import sys

from .convert import main

sys.exit(main())
