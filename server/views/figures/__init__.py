"""PNG twins of the JSON views: drawing (draw.py), cached rendering (render.py), JSON/PNG/CSV
negotiation (answer.py), the report page (report.py), sample data for the figure tests and
benchmarks (samples.py)."""

import os
import tempfile
from pathlib import Path

# Before anything imports matplotlib: it writes its font cache under MPLCONFIGDIR, and a
# server's home directory may be read-only.
os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "decaylab-matplotlib"))
