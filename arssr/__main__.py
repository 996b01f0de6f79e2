import sys

from arssr.cli import main

sys.exit(main())
