import sys
from pathlib import Path

# topo.py (the namespaces-and-daemons helper) lives with the daemon tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))
