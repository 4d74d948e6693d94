"""Shared request/response model bases and field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, never dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class ResponseModel(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    ),
]
Phone = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128, strip_whitespace=False)]
SixDigits = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Region = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
