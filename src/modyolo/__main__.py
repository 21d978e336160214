from modyolo.cli import main
import sys

sys.exit(main())
