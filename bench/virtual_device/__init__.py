"""Virtual Android device for bench: adb wire protocol on 127.0.0.1, sandboxed shell, profile getprop.

``python -m bench.virtual_device --profile sm8450 --port 5585`` runs one until interrupted; tests use
:class:`VirtualDevice` directly. See :mod:`bench.virtual_device.server`.
"""
from bench.virtual_device.server import VirtualDevice

__all__ = ["VirtualDevice"]
