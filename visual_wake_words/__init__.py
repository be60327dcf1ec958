"""Visual wake words (person / no person, 96x96 RGB) with MobileNetV1-0.25 early-exit models."""
