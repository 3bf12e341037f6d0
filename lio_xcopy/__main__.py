import sys

from lio_xcopy.cli import main

sys.exit(main())
