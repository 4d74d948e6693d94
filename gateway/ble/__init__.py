"""BLE hub agent: pairs code-less BLE children through bleak and relays them over MQTT.

:class:`BleHubAgent` (``gateway.ble.agent``) takes the hub's MQTT session as a
:class:`HubUplink` and bleak backends as parameters; ``gateway.ble.link``
defines the GATT link service a paired child serves to its hub.
"""

from __future__ import annotations

from gateway.ble.agent import (
    BLE_PAIR_COMMAND,
    AgentOptions,
    BleHubAgent,
    HubUplink,
    PairedChild,
    PairingFailed,
)
from gateway.ble.link import LINK_SERVICE_UUID, UplinkFrame

__all__ = [
    "BLE_PAIR_COMMAND",
    "LINK_SERVICE_UUID",
    "AgentOptions",
    "BleHubAgent",
    "HubUplink",
    "PairedChild",
    "PairingFailed",
    "UplinkFrame",
]
