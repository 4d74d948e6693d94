"""Code delivery through a real local SMTP server."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from provisioning.errors import ServiceUnavailable
from provisioning.notify.delivery import CodeMessage, SmtpSender


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


async def test_smtp_sender_delivers_the_code(smtp: tuple[Controller, _Inbox]) -> None:
    controller, inbox = smtp
    sender = SmtpSender("127.0.0.1", controller.port, "Zanuo <no-reply@zanuo.test>")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    await sender.send(CodeMessage("email", "kim@example.com", "register", "428913", expires))
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.rcpt_tos == ["kim@example.com"]
    mail = message_from_bytes(envelope.content)
    assert "428913" in mail.get_payload()
    assert mail["Subject"] == "Your Zanuo verification code"


async def test_unreachable_smtp_server_is_service_unavailable() -> None:
    sender = SmtpSender("127.0.0.1", _free_port(), "Zanuo <no-reply@zanuo.test>")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with pytest.raises(ServiceUnavailable):
        await sender.send(CodeMessage("email", "kim@example.com", "login", "111111", expires))


async def test_sms_webhook_receives_the_text_and_refusals_are_service_unavailable() -> None:
    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from provisioning.notify.delivery import WebhookSmsSender

    received: list[dict[str, Any]] = []
    status = {"code": 200}

    async def gateway(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_post("/sms", gateway)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        sender = WebhookSmsSender(str(server.make_url("/sms")), http)
        await sender.send(CodeMessage("sms", "+4915112345678", "login", "905113", expires))
        assert received[0]["to"] == "+4915112345678"
        assert "905113" in received[0]["text"]
        status["code"] = 503
        with pytest.raises(ServiceUnavailable):
            await sender.send(CodeMessage("sms", "+4915112345678", "login", "905114", expires))
