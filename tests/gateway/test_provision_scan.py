"""What the provisioning scan calls a device from its advertisement."""

from __future__ import annotations

import pytest

from drivers import uuids
from gateway.provision_scan import classify


@pytest.mark.parametrize(
    ("services", "name", "profile"),
    [
        ([uuids.PATCH_SERVICE, uuids.HEART_RATE_SERVICE], "ECG Patch", "patch"),
        ([uuids.PMD_SERVICE], "", "polar_pmd"),
        ([uuids.HEART_RATE_SERVICE], "Polar H10 A1B2C3D4", "polar_pmd"),  # HR only: an H10
        ([], "Polar H10 A1B2C3D4", "polar_pmd"),
        ([uuids.HEART_RATE_SERVICE.upper()], "Some strap", "heart_rate"),
        ([], "Headphones", None),
    ],
)
def test_an_advertisement_names_its_profile(services: list[str], name: str, profile: str) -> None:
    assert classify(services, name) == profile
