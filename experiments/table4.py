"""Table 4 of the paper (see paper_tables.py): python -m experiments.table4 [--jobs 2] [--quick] [--scale paper]"""

import sys

from experiments.paper_tables import main

if __name__ == "__main__":
    sys.exit(main(4))
