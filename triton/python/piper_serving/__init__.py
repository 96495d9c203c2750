"""Serving code for the ``piper`` Triton model, free of Triton: its voice catalogue
(voices) and its synthesis (synthesis), which the model.py shell delegates to."""

import os

# onnxruntime's Linux wheels carry Microsoft's telemetry client: unless told not to,
# every process that opens a session leaves a session file in $TMPDIR, a device id and
# an event database under ~/.cache/Microsoft, and queues events for Microsoft's
# collector. A voice server does none of that. Set before onnxruntime is imported
# (piper imports it); an operator's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
