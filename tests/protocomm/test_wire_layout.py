"""Our generated messages put every field where Espressif's protocol has it, to the byte.

The expected bytes are assembled by hand from field numbers and wire types
(the facts in PROTOCOMM.md), independently of the ``.proto`` files.
"""

from __future__ import annotations

from provisioning.protocomm.proto import (
    constants_pb2,
    sec1_pb2,
    sec2_pb2,
    session_pb2,
    wifi_config_pb2,
    wifi_constants_pb2,
    wifi_ctrl_pb2,
    wifi_scan_pb2,
)

KEY = bytes(range(32))


def varint(value: int) -> bytes:
    """Encode a base-128 varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def vfield(number: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(number << 3) + varint(value)


def lfield(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_sec1_command0_layout() -> None:
    message = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
    message.sec1.msg = sec1_pb2.Session_Command0
    message.sec1.sc0.client_pubkey = KEY
    expected = vfield(2, 1) + lfield(11, lfield(20, lfield(1, KEY)))
    assert message.SerializeToString() == expected


def test_sec1_response1_layout() -> None:
    message = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
    message.sec1.msg = sec1_pb2.Session_Response1
    message.sec1.sr1.status = constants_pb2.CryptoError
    message.sec1.sr1.device_verify_data = KEY
    inner = vfield(1, 6) + lfield(3, KEY)
    expected = vfield(2, 1) + lfield(11, vfield(1, 3) + lfield(23, inner))
    assert message.SerializeToString() == expected


def test_sec2_messages_layout() -> None:
    cmd0 = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
    cmd0.sec2.msg = sec2_pb2.S2Session_Command0
    cmd0.sec2.sc0.client_username = b"wifiprov"
    cmd0.sec2.sc0.client_pubkey = KEY
    resp1 = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
    resp1.sec2.msg = sec2_pb2.S2Session_Response1
    resp1.sec2.sr1.device_proof = KEY
    resp1.sec2.sr1.device_nonce = KEY[:12]
    assert cmd0.SerializeToString() == vfield(2, 2) + lfield(
        12, lfield(20, lfield(1, b"wifiprov") + lfield(2, KEY))
    )
    assert resp1.SerializeToString() == vfield(2, 2) + lfield(
        12, vfield(1, 3) + lfield(23, lfield(2, KEY) + lfield(3, KEY[:12]))
    )


def test_wifi_config_layout() -> None:
    set_config = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeCmdSetConfig)
    set_config.cmd_set_config.ssid = b"home"
    set_config.cmd_set_config.passphrase = b"secret"
    set_config.cmd_set_config.bssid = b"\x01\x02\x03\x04\x05\x06"
    set_config.cmd_set_config.channel = 6
    expected_set = vfield(1, 2) + lfield(
        12,
        lfield(1, b"home")
        + lfield(2, b"secret")
        + lfield(3, b"\x01\x02\x03\x04\x05\x06")
        + vfield(4, 6),
    )
    assert set_config.SerializeToString() == expected_set

    status = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeRespGetStatus)
    status.resp_get_status.sta_state = wifi_constants_pb2.ConnectionFailed
    status.resp_get_status.fail_reason = wifi_constants_pb2.NetworkNotFound
    assert status.SerializeToString() == vfield(1, 1) + lfield(11, vfield(2, 3) + vfield(10, 1))

    connected = wifi_config_pb2.WiFiConfigPayload(msg=wifi_config_pb2.TypeRespGetStatus)
    connected.resp_get_status.sta_state = wifi_constants_pb2.Connected
    connected.resp_get_status.connected.ip4_addr = "10.0.0.2"
    connected.resp_get_status.connected.auth_mode = wifi_constants_pb2.WPA2_PSK
    connected.resp_get_status.connected.channel = 11
    state = lfield(1, b"10.0.0.2") + vfield(2, 3) + vfield(5, 11)
    assert connected.SerializeToString() == vfield(1, 1) + lfield(11, lfield(11, state))


def test_wifi_scan_and_ctrl_layout() -> None:
    results = wifi_scan_pb2.WiFiScanPayload(msg=wifi_scan_pb2.TypeRespScanResult)
    results.resp_scan_result.entries.add(
        ssid=b"ap", channel=1, rssi=-40, bssid=b"\xaa" * 6, auth=wifi_constants_pb2.WPA3_PSK
    )
    entry = (
        lfield(1, b"ap")
        + vfield(2, 1)
        + vfield(3, (-40) & 0xFFFFFFFFFFFFFFFF)  # int32 negatives are 10-byte varints
        + lfield(4, b"\xaa" * 6)
        + vfield(5, 6)
    )
    assert results.SerializeToString() == vfield(1, 5) + lfield(15, lfield(1, entry))

    start = wifi_scan_pb2.WiFiScanPayload(msg=wifi_scan_pb2.TypeCmdScanStart)
    start.cmd_scan_start.blocking = True
    start.cmd_scan_start.period_ms = 120
    assert start.SerializeToString() == lfield(10, vfield(1, 1) + vfield(4, 120))

    reprov = wifi_ctrl_pb2.WiFiCtrlPayload(msg=wifi_ctrl_pb2.TypeCmdCtrlReprov)
    reprov.cmd_ctrl_reprov.SetInParent()
    assert reprov.SerializeToString() == vfield(1, 3) + lfield(13, b"")
