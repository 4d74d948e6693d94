"""``zanuo ca …`` and ``zanuo devices …`` as an operator runs them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.mqtt.broker import BrokerRefused, BrokerTlsFiles, client_tls_context, connect_mqtt
from provisioning import cli
from provisioning.clock import SystemClock
from provisioning.config import Secrets, Settings
from provisioning.domain.registry import CaPaths
from provisioning.security import ca as device_ca
from provisioning.security.codes import parse_label_payload
from provisioning.storage.engine import Database
from tests.fixtures.mosquitto import LocalPki, running_broker
from tests.registry.factory import camera_row, serial_of, write_jsonl

Run = tuple[int, str, str]


@pytest.fixture
def data_dir_env(
    settings: Settings,
    secrets: Secrets,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Point the CLI at the test's data dir (and database); restore logging after."""
    monkeypatch.setenv("ZANUO_PATHS__DATA_DIR", str(settings.data_dir))
    if not database.is_sqlite:
        monkeypatch.setenv("ZANUO_DATABASE__URL", settings.database_url)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield settings.data_dir
    root.handlers[:] = handlers
    root.setLevel(level)


async def zanuo(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Run the CLI (it owns its event loop, so in a thread) and capture its output."""
    status = await asyncio.to_thread(cli.main, ["--log-level", "WARNING", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _fleet(count: int) -> list[dict[str, object]]:
    rows = []
    for i in range(count):
        row = camera_row(i)
        row.pop("label_code")
        rows.append(row)
    return rows


async def test_ca_and_device_commands_round_trip_without_printing_secrets(
    data_dir_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = await zanuo(capsys, "ca", "init")
    assert status == 0
    assert "device CA" in out
    fingerprint = device_ca.describe_ca(CaPaths.in_data_dir(data_dir_env).ca_dir)
    assert fingerprint.fingerprint_sha256 in (await zanuo(capsys, "ca", "show"))[1]
    factory = write_jsonl(tmp_path / "factory.jsonl", _fleet(4))
    flash = tmp_path / "flash"

    status, out, err = await zanuo(
        capsys, "devices", "import", str(factory), "--generate-into", str(flash)
    )

    assert status == 0
    payloads = [parse_label_payload(line) for line in out.splitlines()]
    assert [p.serial for p in payloads] == [serial_of(i) for i in range(4)]
    assert all(p.code for p in payloads)
    assert re.search(r"importing +\[#+\] 100% 4/4", err)
    assert re.search(r"4 rows in [0-9.]+ s \([0-9,]+ rows/s\): 4 imported, 0 unchanged", err)

    status, out, err = await zanuo(
        capsys, "devices", "import", str(factory), "--generate-into", str(flash)
    )
    assert (status, out) == (0, "")
    assert "0 imported, 4 unchanged, 0 invalid" in err

    status, out, _ = await zanuo(capsys, "devices", "show", serial_of(2))
    assert status == 0
    info = json.loads((flash / serial_of(2) / "device.json").read_text())
    assert info["label_code"] not in out
    assert "PRIVATE" not in out
    certificate = device_ca.read_certificate(flash / serial_of(2) / "device.crt.pem")
    assert device_ca.certificate_fingerprint(certificate) in out
    assert re.search(r"status: +active", out)

    status, out, _ = await zanuo(
        capsys, "devices", "revoke", serial_of(2), "--reason", "key_compromise"
    )
    assert status == 0
    assert f"{serial_of(2)} revoked (key_compromise)" in out
    assert "CRL #2 with 1 revoked certificate(s)" in out
    assert "no managed broker is running" in out
    assert re.search(r"status: +revoked", (await zanuo(capsys, "devices", "show", serial_of(2)))[1])

    status, out, _ = await zanuo(capsys, "ca", "crl")
    assert status == 0
    assert "CRL #3 with 1 revoked certificate(s)" in out


async def test_labels_file_and_bridge_certificate_are_written_for_their_owner_only(
    data_dir_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await zanuo(capsys, "ca", "init")
    factory = write_jsonl(tmp_path / "factory.jsonl", _fleet(3))
    labels = tmp_path / "labels.txt"

    status, out, _ = await zanuo(
        capsys,
        "devices",
        "import",
        str(factory),
        "--generate-into",
        str(tmp_path / "flash"),
        "--labels",
        str(labels),
    )

    assert (status, out) == (0, "")
    assert [parse_label_payload(line).serial for line in labels.read_text().splitlines()] == [
        serial_of(i) for i in range(3)
    ]
    assert labels.stat().st_mode & 0o077 == 0
    status, out, _ = await zanuo(capsys, "ca", "bridge-cert")
    assert status == 0
    paths = CaPaths.in_data_dir(data_dir_env)
    assert device_ca.common_name(device_ca.read_certificate(paths.bridge_cert_file)) == "bridge"
    assert paths.bridge_key_file.stat().st_mode & 0o077 == 0
    assert "bridge client certificate" in (await zanuo(capsys, "ca", "show"))[1]


async def test_import_of_a_file_with_a_bad_row_exits_2_naming_row_and_field(
    data_dir_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await zanuo(capsys, "ca", "init")
    rows = _fleet(3)
    rows[1]["label_code"] = "ABCDE1"
    factory = write_jsonl(tmp_path / "factory.jsonl", rows)

    status, out, err = await zanuo(
        capsys, "devices", "import", str(factory), "--generate-into", str(tmp_path / "flash")
    )

    assert status == 2
    assert "row 2, field label_code" in err
    assert "nothing was imported" in err
    assert "ABCDE1" not in err + out
    assert not (tmp_path / "flash").exists()
    assert (await zanuo(capsys, "devices", "show", serial_of(0)))[0] == 2


async def test_skip_invalid_needs_a_report_and_then_lists_the_bad_row_in_it(
    data_dir_env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await zanuo(capsys, "ca", "init")
    rows = _fleet(3)
    rows[2]["serial"] = "bad serial"
    factory = write_jsonl(tmp_path / "factory.jsonl", rows)
    flash, report = str(tmp_path / "flash"), tmp_path / "report.jsonl"

    status, _, err = await zanuo(
        capsys, "devices", "import", str(factory), "--generate-into", flash, "--skip-invalid"
    )
    assert status == 2
    assert "--report" in err

    status, _, err = await zanuo(
        capsys,
        "devices",
        "import",
        str(factory),
        "--generate-into",
        flash,
        "--skip-invalid",
        "--report",
        str(report),
    )
    assert status == 0
    assert "2 imported, 0 unchanged, 1 invalid" in err
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["row"], line["field"]) for line in lines] == [(3, "serial")]


@dataclasses.dataclass(slots=True)
class _DataDirPki(LocalPki):
    """The CLI's own PKI (``CaPaths.in_data_dir``) seen through the broker fixture."""

    def broker_tls_files(self) -> BrokerTlsFiles:
        """Return the broker files where the ``ca`` commands put them."""
        paths = CaPaths.in_data_dir(self.directory)
        return BrokerTlsFiles(
            ca_file=paths.ca_cert_file,
            cert_file=paths.server_cert_file,
            key_file=paths.server_key_file,
            crl_file=paths.crl_file,
        )


async def test_revoke_reloads_the_broker_named_by_the_pid_file_and_it_refuses_the_device(
    data_dir_env: Path,
    secrets: Secrets,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    paths = CaPaths.in_data_dir(data_dir_env)
    assert (await zanuo(capsys, "ca", "init"))[0] == 0
    status, _, _ = await zanuo(
        capsys, "ca", "server-cert", "--host", "127.0.0.1", "--host", "localhost"
    )
    assert status == 0
    factory = write_jsonl(tmp_path / "factory.jsonl", _fleet(2))
    flash = tmp_path / "flash"
    assert (await zanuo(capsys, "devices", "import", str(factory), "--generate-into", str(flash)))[
        0
    ] == 0
    authority = device_ca.load_ca(paths.ca_dir, secrets.ca_passphrase.get_secret_value())
    pki = _DataDirPki(directory=data_dir_env, ca=authority, clock=SystemClock())
    contexts = [
        client_tls_context(
            flash / serial / "ca.crt.pem",
            flash / serial / "device.crt.pem",
            flash / serial / "device.key.pem",
        )
        for serial in (serial_of(0), serial_of(1))
    ]

    async with running_broker(pki, data_dir_env) as broker:
        assert broker.pid is not None
        paths.broker_pid_file.write_text(f"{broker.pid}\n")
        for context in contexts:
            async with connect_mqtt(broker.host, broker.port, context):
                pass
        offset = broker.log_size()

        status, out, _ = await zanuo(
            capsys, "devices", "revoke", serial_of(0), "--reason", "key_compromise"
        )

        assert status == 0
        assert "the managed broker reloaded the CRL" in out
        async with asyncio.timeout(5):
            await broker.wait_for_log(b"Reloading config", offset=offset)
        with pytest.raises(BrokerRefused):
            async with connect_mqtt(broker.host, broker.port, contexts[0], connack_timeout=1.0):
                pass
        async with connect_mqtt(broker.host, broker.port, contexts[1]):
            pass
