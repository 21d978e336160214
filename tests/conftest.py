"""Suite-wide settings: small thread counts (CI has 2 cores and runs 2 workers), no network."""

import os

os.environ.setdefault("ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS", "1")  # the yolov5 peer would pip-install
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
