import sys

from holly.cli import main

sys.exit(main())
