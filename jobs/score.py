"""spark-submit entry point: `spark-submit jobs/score.py --config conf/demo.toml [--date YYYY-MM-DD]`."""

import sys
from pathlib import Path

# Lets a plain checkout run without installing recbatch (the package sits beside jobs/).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbatch.submit import main

if __name__ == "__main__":
    sys.exit(main("score"))
