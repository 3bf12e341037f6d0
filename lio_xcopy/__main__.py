import sys

from lio_xcopy.control.cli import main

sys.exit(main())
