"""Prometheus metrics of one process, in its own registry (prefix ``zanuo_``).

No metric carries a per-device or per-account label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "zanuo_http_requests",
            "HTTP requests by route and status class",
            ["route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "zanuo_http_request_seconds", "HTTP handler latency", ["route"], registry=r
        )
        self.auth_codes_sent = Counter(
            "zanuo_auth_codes_sent", "verification codes sent by channel", ["channel"], registry=r
        )
        self.logins = Counter("zanuo_logins", "login attempts by outcome", ["outcome"], registry=r)
        self.lockouts = Counter("zanuo_lockouts", "lockouts started by kind", ["kind"], registry=r)
        self.bindings = Counter(
            "zanuo_bindings", "binding attempts by outcome", ["outcome"], registry=r
        )
        self.bridge_connected = Gauge(
            "zanuo_bridge_connected", "1 while the MQTT bridge is connected", registry=r
        )
        self.bridge_reconnects = Counter(
            "zanuo_bridge_reconnects", "MQTT bridge reconnects", registry=r
        )
        self.mqtt_messages_in = Counter(
            "zanuo_mqtt_messages_in", "MQTT messages received by kind", ["kind"], registry=r
        )
        self.mqtt_messages_out = Counter(
            "zanuo_mqtt_messages_out", "MQTT messages published by kind", ["kind"], registry=r
        )
        self.mqtt_dropped = Counter(
            "zanuo_mqtt_dropped", "MQTT messages dropped by reason", ["reason"], registry=r
        )
        self.mqtt_handler_latency = Histogram(
            "zanuo_mqtt_handler_seconds", "MQTT handler latency by kind", ["kind"], registry=r
        )
        self.devices_online = Gauge("zanuo_devices_online", "devices online", registry=r)
        self.commands = Counter(
            "zanuo_commands", "device commands by name and outcome", ["name", "outcome"], registry=r
        )
