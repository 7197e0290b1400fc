import sys
from pathlib import Path

# topo.py (the namespaces-and-daemons helper) lives with the daemon tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))
# labutil.py (a lab name of the test process's own, the CLI on it) with the lab tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))
