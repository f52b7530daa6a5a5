import sys

from busline.bench.main import main

sys.exit(main())
