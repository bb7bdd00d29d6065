"""Device-specific models: the bundle file format (bundle), per-device fine-tuning (finetune) and the DCASE
inference API that routes each device id to its model or the general fallback (dcase).
"""
