import sys

from modyolo.cli import main

sys.exit(main())
