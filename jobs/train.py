"""spark-submit entry point: `spark-submit jobs/train.py --config conf/demo.toml [--date YYYY-MM-DD]`.

The same as `recbatch train ...`: the CLI parses the arguments, builds the session from the one
spark-submit started, and maps failures to the documented exit codes.
"""

import sys
from pathlib import Path

# Lets a plain checkout run without installing recbatch (the package sits beside jobs/).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog_name="spark-submit jobs/train.py"))
