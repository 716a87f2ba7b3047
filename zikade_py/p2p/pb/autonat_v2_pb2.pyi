# mypy: disable-error-code="type-arg"
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DialStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNUSED: _ClassVar[DialStatus]
    E_DIAL_ERROR: _ClassVar[DialStatus]
    E_DIAL_BACK_ERROR: _ClassVar[DialStatus]
    OK: _ClassVar[DialStatus]
UNUSED: DialStatus
E_DIAL_ERROR: DialStatus
E_DIAL_BACK_ERROR: DialStatus
OK: DialStatus

class Message(_message.Message):
    __slots__ = ("dialRequest", "dialResponse", "dialDataRequest", "dialDataResponse")
    DIALREQUEST_FIELD_NUMBER: _ClassVar[int]
    DIALRESPONSE_FIELD_NUMBER: _ClassVar[int]
    DIALDATAREQUEST_FIELD_NUMBER: _ClassVar[int]
    DIALDATARESPONSE_FIELD_NUMBER: _ClassVar[int]
    dialRequest: DialRequest
    dialResponse: DialResponse
    dialDataRequest: DialDataRequest
    dialDataResponse: DialDataResponse
    def __init__(self, dialRequest: _Optional[_Union[DialRequest, _Mapping]] = ..., dialResponse: _Optional[_Union[DialResponse, _Mapping]] = ..., dialDataRequest: _Optional[_Union[DialDataRequest, _Mapping]] = ..., dialDataResponse: _Optional[_Union[DialDataResponse, _Mapping]] = ...) -> None: ...

class DialRequest(_message.Message):
    __slots__ = ("addrs", "nonce")
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    addrs: _containers.RepeatedScalarFieldContainer[bytes]
    nonce: int
    def __init__(self, addrs: _Optional[_Iterable[bytes]] = ..., nonce: _Optional[int] = ...) -> None: ...

class DialDataRequest(_message.Message):
    __slots__ = ("addrIdx", "numBytes")
    ADDRIDX_FIELD_NUMBER: _ClassVar[int]
    NUMBYTES_FIELD_NUMBER: _ClassVar[int]
    addrIdx: int
    numBytes: int
    def __init__(self, addrIdx: _Optional[int] = ..., numBytes: _Optional[int] = ...) -> None: ...

class DialResponse(_message.Message):
    __slots__ = ("status", "addrIdx", "dialStatus")
    class ResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        E_INTERNAL_ERROR: _ClassVar[DialResponse.ResponseStatus]
        E_REQUEST_REJECTED: _ClassVar[DialResponse.ResponseStatus]
        E_DIAL_REFUSED: _ClassVar[DialResponse.ResponseStatus]
        OK: _ClassVar[DialResponse.ResponseStatus]
    E_INTERNAL_ERROR: DialResponse.ResponseStatus
    E_REQUEST_REJECTED: DialResponse.ResponseStatus
    E_DIAL_REFUSED: DialResponse.ResponseStatus
    OK: DialResponse.ResponseStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDRIDX_FIELD_NUMBER: _ClassVar[int]
    DIALSTATUS_FIELD_NUMBER: _ClassVar[int]
    status: DialResponse.ResponseStatus
    addrIdx: int
    dialStatus: DialStatus
    def __init__(self, status: _Optional[_Union[DialResponse.ResponseStatus, str]] = ..., addrIdx: _Optional[int] = ..., dialStatus: _Optional[_Union[DialStatus, str]] = ...) -> None: ...

class DialDataResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class DialBack(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...

class DialBackResponse(_message.Message):
    __slots__ = ("status",)
    class DialBackStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[DialBackResponse.DialBackStatus]
    OK: DialBackResponse.DialBackStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: DialBackResponse.DialBackStatus
    def __init__(self, status: _Optional[_Union[DialBackResponse.DialBackStatus, str]] = ...) -> None: ...
