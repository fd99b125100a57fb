import sys

from unet_cli.main import main

sys.exit(main())
