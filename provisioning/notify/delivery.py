"""Code senders: a development outbox file, SMTP mail and an SMS webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.message
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import aiohttp
import aiosmtplib

from provisioning.errors import ServiceUnavailable

_LOGGER = logging.getLogger(__name__)

Channel = Literal["email", "sms"]


@dataclass(frozen=True, slots=True)
class CodeMessage:
    """One verification code to deliver."""

    channel: Channel
    recipient: str
    purpose: str
    code: str
    expires_at: dt.datetime


class CodeSender(Protocol):
    """Delivers one code to one recipient."""

    async def send(self, message: CodeMessage) -> None:
        """Deliver the message or raise ServiceUnavailable."""
        ...


def render_text(message: CodeMessage) -> str:
    """Return the human text of a code message."""
    minutes = max(1, round((message.expires_at - dt.datetime.now(dt.UTC)).total_seconds() / 60))
    return (
        f"Your Zanuo verification code is {message.code}. "
        f"It expires in {minutes} minutes. Never share it with anyone."
    )


class OutboxSender:
    """Appends codes to a file under the data dir (development mode only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def send(self, message: CodeMessage) -> None:
        """Append the code as one JSON line to the outbox file."""
        line = json.dumps(
            {
                "channel": message.channel,
                "recipient": message.recipient,
                "purpose": message.purpose,
                "code": message.code,
                "expires_at": message.expires_at.isoformat(),
            }
        )
        async with self._lock:
            await asyncio.to_thread(self._append, line)
        _LOGGER.info(
            "verification code for a %s recipient written to %s", message.channel, self.path
        )

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def read_codes(self) -> list[dict[str, str]]:
        """Return every message in the outbox (development tools and tests)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]


class SmtpSender:
    """Sends codes as mail through an SMTP server."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = False,
        username: str = "",
        password: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self.password = password

    async def send(self, message: CodeMessage) -> None:
        """Send one mail; a refused or unreachable server raises ServiceUnavailable."""
        mail = email.message.EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = "Your Zanuo verification code"
        mail.set_content(render_text(message))
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                start_tls=self.starttls,
                username=self.username or None,
                password=self.password or None,
                timeout=15,
            )
        except (aiosmtplib.SMTPException, OSError) as err:
            raise ServiceUnavailable("mail delivery failed") from err


class WebhookSmsSender:
    """Posts SMS codes to an SMS gateway's webhook."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def send(self, message: CodeMessage) -> None:
        """POST {to, text} to the webhook; a non-2xx answer raises ServiceUnavailable."""
        try:
            async with self._session.post(
                self.url,
                json={"to": message.recipient, "text": render_text(message)},
                timeout=aiohttp.ClientTimeout(total=15),
            ) as response:
                if response.status >= 300:
                    raise ServiceUnavailable("sms gateway refused the message")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ServiceUnavailable("sms delivery failed") from err


class Notifier:
    """Routes a code to the sender of its channel."""

    def __init__(self, email_sender: CodeSender, sms_sender: CodeSender) -> None:
        self._senders: dict[Channel, CodeSender] = {"email": email_sender, "sms": sms_sender}

    async def send(self, message: CodeMessage) -> None:
        """Deliver through the channel's sender."""
        await self._senders[message.channel].send(message)
