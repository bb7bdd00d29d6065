"""Deployment: PyTorch -> ONNX -> TFLite export with calibration and parity (export, the converter's child
process _convert_tflite), the one TFLite flatbuffer reader (tflite_graph), the TFLite runtime and its metadata
(runtime), per-layer int8 sensitivity (sensitivity) and `edgeasc predict` (predict).
"""
