"""Simulated devices (a bumble BLE patch, a pseudo-terminal stress-test cart) for the demo and tests."""
