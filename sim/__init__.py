"""Simulated devices for the demo and tests: a bumble BLE patch, a pseudo-terminal cart."""
