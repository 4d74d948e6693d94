"""MQTT side of the gateway: the managed broker (and, later, the bridge)."""
