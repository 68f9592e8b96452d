"""Shared test set-up: no network for Ultralytics, small generated datasets."""

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
