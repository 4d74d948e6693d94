"""``zanuo bridge status``: the MQTT bridge's health for a person, from ``/metrics``."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from provisioning.cli.common import SubParsers
from provisioning.config import Secrets, Settings


def register(sub: SubParsers) -> None:
    """Add the ``bridge`` commands."""
    bridge = sub.add_parser("bridge", help="the MQTT bridge")
    bridge_sub = bridge.add_subparsers(dest="bridge_command", required=True)
    status = bridge_sub.add_parser(
        "status", help="connected, reconnects, traffic, drops and devices online"
    )
    status.add_argument(
        "--url",
        default=None,
        help="metrics URL of the running service (default: http://<server.host>:<server.port>/metrics)",
    )
    status.set_defaults(handler=show_status)


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return values


def _by_label(samples: dict[tuple[tuple[str, str], ...], float], label: str) -> str:
    parts = [
        f"{dict(labels)[label]}={int(value)}"
        for labels, value in sorted(samples.items())
        if dict(labels).get(label) and value
    ]
    return ", ".join(parts) if parts else "none"


def format_status(metrics_text: str) -> str:
    """Render the bridge's metrics (Prometheus text) as a short report."""
    values = _samples(metrics_text)

    def scalar(name: str) -> int:
        return int(sum(values.get(name, {}).values()))

    connected = scalar("zanuo_bridge_connected")
    lines = [
        f"connected:        {'yes' if connected else 'NO'}",
        f"reconnects:       {scalar('zanuo_bridge_reconnects_total')}",
        f"messages in:      {_by_label(values.get('zanuo_mqtt_messages_in_total', {}), 'kind')}",
        f"messages out:     {_by_label(values.get('zanuo_mqtt_messages_out_total', {}), 'kind')}",
        f"dropped:          {_by_label(values.get('zanuo_mqtt_dropped_total', {}), 'reason')}",
        f"devices online:   {scalar('zanuo_devices_online')}",
    ]
    return "\n".join(lines)


def show_status(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Print the running service's bridge status; exit 1 when disconnected or unreachable."""
    url = args.url or f"http://{settings.server.host}:{settings.server.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (operator-given http URL)
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as err:
        print(f"zanuo: cannot read {url}: {err}")
        return 1
    report = format_status(text)
    print(report)
    return 0 if report.startswith("connected:        yes") else 1
