from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ZnBindStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BindOk: _ClassVar[ZnBindStatus]
    BindInvalidArgument: _ClassVar[ZnBindStatus]
    BindRejected: _ClassVar[ZnBindStatus]
    BindInternalError: _ClassVar[ZnBindStatus]
BindOk: ZnBindStatus
BindInvalidArgument: ZnBindStatus
BindRejected: ZnBindStatus
BindInternalError: ZnBindStatus

class ZnBindRequest(_message.Message):
    __slots__ = ("token", "broker_host", "broker_port")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BROKER_HOST_FIELD_NUMBER: _ClassVar[int]
    BROKER_PORT_FIELD_NUMBER: _ClassVar[int]
    token: bytes
    broker_host: str
    broker_port: int
    def __init__(self, token: _Optional[bytes] = ..., broker_host: _Optional[str] = ..., broker_port: _Optional[int] = ...) -> None: ...

class ZnBindResponse(_message.Message):
    __slots__ = ("status", "serial", "device_nonce", "signature")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    status: ZnBindStatus
    serial: str
    device_nonce: bytes
    signature: bytes
    def __init__(self, status: _Optional[_Union[ZnBindStatus, str]] = ..., serial: _Optional[str] = ..., device_nonce: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...
