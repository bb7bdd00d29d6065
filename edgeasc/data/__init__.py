"""Data: audio reading and resampling (audio), the TAU22-layout dataset and its log-mel cache (dataset), the
training-time augmentations (augment) and the microphone impulse-response bank (ir_bank).
"""
