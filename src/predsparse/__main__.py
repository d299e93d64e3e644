import sys

from predsparse.cli import main

sys.exit(main())
