"""modyolo: YOLOv5-style detectors declared in YAML, with swappable backbones."""

__version__ = "0.1.0"
