import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# test helpers (util, pcapgen, tshark_oracle, engine/netsim) import by name
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "engine"))

# the VM tier: tests marked kernel(...) run in a VM when this kernel lacks a feature
pytest_plugins = ["vmtier"]
