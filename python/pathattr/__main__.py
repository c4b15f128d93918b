"""`python -m pathattr ...`, so that `torchrun ... -m pathattr attribute ...` works."""
import sys

from .apps.cli import main

sys.exit(main())
