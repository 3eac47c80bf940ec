"""Table 1 of the paper (see paper_tables.py): python experiments/table1.py [--jobs 2] [--quick] [--scale paper]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_tables import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(1))
