import sys
from pathlib import Path

# gaussian_models lives next to the tests, seed_model one folder up (shared with tests/exmc); make
# both importable whatever pytest's rootdir is.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
