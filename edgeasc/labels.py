"""Scene classes and recording devices of TAU Urban Acoustic Scenes 2022 Mobile (DCASE 2025 Task 1)."""

from __future__ import annotations

SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
"""Class order used by every model output, as in the DCASE baseline."""

DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")

DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real": ("a", "b", "c"),
    "seen": ("s1", "s2", "s3"),
    "unseen": ("s4", "s5", "s6"),
}
"""Groups used in reports; `unseen` devices never appear in training."""

EVAL_ONLY_DEVICES: tuple[str, ...] = ("s7", "s8", "s9", "s10")
"""Devices of the DCASE 2025 evaluation set without development data (answered by a bundle's general model)."""

EVAL_DEVICES: tuple[str, ...] = (*DEVICES, *EVAL_ONLY_DEVICES)
"""Device ids of the DCASE 2025 evaluation set: the development devices plus four unseen ones."""

GENERAL = "general"
"""The member of a device bundle that answers every device without a model of its own."""


def device_key(device_id: object) -> str:
    """A device id as edgeasc stores and compares it: stripped, lower case ("S8 " -> "s8")."""
    return str(device_id).strip().lower()


def member_for(device_id: object, members: object) -> str:
    """The one routing rule of device models: the member that answers `device_id` is the device's own id when
    `members` (ids with a model of their own) holds it, else the general model."""
    key = device_key(device_id)
    return key if key in members else GENERAL

CITIES: tuple[str, ...] = (
    "amsterdam",
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "madrid",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)
