"""Running a model file (checkpoint, state_dict, YAML or an exported ONNX / TorchScript / OpenVINO file)
on images, folders, videos or a dataset split: sources -> predictor -> results, and validation of
loaded weights (``val_run``). Above ``eval`` (metrics) and ``deploy`` (the exported backends)."""
