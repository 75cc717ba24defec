"""The captioning model: encoders, the decoder, bundles, runtimes and the search.

ONNX Runtime (1.2x and later, on Linux too) queues usage events in ``~/.cache/Microsoft/
DeveloperTools`` (a device id, the program's path, the machine, the graphs run) for sending to
Microsoft. People caption their own photos with imgcap, offline: that is off here before anything
imports it, unless the environment says otherwise (``ORT_DISABLE_TELEMETRY=0``).
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
