"""The topic scheme and the payload models, without a broker."""

from __future__ import annotations

import json

import pytest

from gateway.mqtt import payloads, topics
from gateway.mqtt.topics import Inbound, Outbound


def test_device_topics_round_trip_direct_and_relayed() -> None:
    for kind in Inbound:
        direct = topics.device_topic("ZC1-0001", kind)
        assert topics.parse_device_topic(direct) == topics.DeviceTopic("ZC1-0001", kind)
        relayed = topics.device_topic("ZL1-0002", kind, hub="ZH1-0003")
        assert relayed.startswith("zn/v1/ZH1-0003/sub/ZL1-0002/")
        assert topics.parse_device_topic(relayed) == topics.DeviceTopic(
            "ZL1-0002", kind, "ZH1-0003"
        )
    assert topics.device_topic("ZC1-0001", Outbound.CMD) == "zn/v1/ZC1-0001/cmd"
    assert topics.device_topic("ZC1-0001", Outbound.BIND_RESULT) == "zn/v1/ZC1-0001/bind/result"


@pytest.mark.parametrize(
    "topic",
    [
        "zn/v2/ZC1-0001/event",
        "zn/v1/ZC1-0001",
        "zn/v1/ZC1-0001/bind/result",
        "zn/v1/ZC1-0001/cmd",
        "zn/v1/zc1-lower/event",
        "zn/v1/ZC1-0001/sub/ZC1-0001/event",
        "zn/v1/ZC1-0001/sub/event",
        "zn/v1/ZC1-0001/sub/not-a-serial/event",
        "zn/bridge/b1/state",
    ],
)
def test_topics_outside_the_scheme_are_refused(topic: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse_device_topic(topic)


def test_shared_subscriptions_cover_every_inbound_kind_once() -> None:
    shared = topics.subscriptions("zanuo-bridge")
    assert len(shared) == 2 * len(Inbound)
    assert "$share/zanuo-bridge/zn/v1/+/event" in shared
    assert "$share/zanuo-bridge/zn/v1/+/sub/+/cmd/ack" in shared
    assert topics.subscriptions(None) == topics.inbound_filters()
    with pytest.raises(topics.TopicError):
        topics.shared("bad/group", "zn/v1/+/event")


def test_bridge_topics_name_instances_only() -> None:
    assert topics.bridge_state_topic("b1") == "zn/bridge/b1/state"
    assert topics.parse_bridge_topic(topics.bridge_session_topic("b1")) == ("b1", "session")
    with pytest.raises(topics.TopicError):
        topics.bridge_state_topic("a/b")


def test_payloads_are_parsed_by_kind_with_reasons_for_what_is_dropped() -> None:
    event = payloads.parse(
        Inbound.EVENT,
        json.dumps({"id": "e1", "type": "motion", "ts": "2026-11-02T09:00:00Z"}).encode(),
    )
    assert isinstance(event, payloads.EventPayload)
    cases = {
        b"{": "malformed",
        b"\xff": "malformed",
        b"[]": "schema",
        b'{"id": "e1", "type": "motion"}': "schema",
        b'{"id": "e1", "type": "motion", "ts": "2026-11-02T09:00:00"}': "schema",  # naive time
        b'{"id": "e 1", "type": "motion", "ts": "2026-11-02T09:00:00Z"}': "schema",
        b'{"id": "e1", "type": "motion", "ts": "2026-11-02T09:00:00Z", "x": 1}': "schema",
        b"x" * (payloads.MAX_PAYLOAD_BYTES[Inbound.EVENT] + 1): "oversized",
    }
    for raw, reason in cases.items():
        with pytest.raises(payloads.PayloadError) as caught:
            payloads.parse(Inbound.EVENT, raw)
        assert caught.value.reason == reason
    with pytest.raises(payloads.PayloadError) as caught:
        payloads.parse(Inbound.STATE, b'{"online": true, "firmware": "' + b"1" * 2000 + b'"}')
    assert caught.value.reason == "oversized"


def test_outbound_payloads_are_compact_json_without_empty_fields() -> None:
    result = payloads.BindResultPayload(status="bound")
    assert payloads.encode(result) == b'{"status":"bound"}'


@pytest.mark.parametrize("field", ["template", "fingerprint", "face_image", "biometric"])
def test_an_event_carrying_biometric_data_is_refused(field: str) -> None:
    event = {
        "id": "ev-bio-1",
        "type": "unlock",
        "ts": "2026-11-02T09:00:00+00:00",
        "result": "match",
        field: "AAECAwQFBgcICQ==",
    }
    with pytest.raises(payloads.PayloadError) as caught:
        payloads.parse(Inbound.EVENT, json.dumps(event).encode())
    assert caught.value.reason == "schema"
