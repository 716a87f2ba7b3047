# mypy: disable-error-code="type-arg"
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("wantlist", "blocks", "payload", "blockPresences", "pendingBytes")
    class BlockPresenceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        Have: _ClassVar[Message.BlockPresenceType]
        DontHave: _ClassVar[Message.BlockPresenceType]
    Have: Message.BlockPresenceType
    DontHave: Message.BlockPresenceType
    class Wantlist(_message.Message):
        __slots__ = ("entries", "full")
        class WantType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            Block: _ClassVar[Message.Wantlist.WantType]
            Have: _ClassVar[Message.Wantlist.WantType]
        Block: Message.Wantlist.WantType
        Have: Message.Wantlist.WantType
        class Entry(_message.Message):
            __slots__ = ("block", "priority", "cancel", "wantType", "sendDontHave")
            BLOCK_FIELD_NUMBER: _ClassVar[int]
            PRIORITY_FIELD_NUMBER: _ClassVar[int]
            CANCEL_FIELD_NUMBER: _ClassVar[int]
            WANTTYPE_FIELD_NUMBER: _ClassVar[int]
            SENDDONTHAVE_FIELD_NUMBER: _ClassVar[int]
            block: bytes
            priority: int
            cancel: bool
            wantType: Message.Wantlist.WantType
            sendDontHave: bool
            def __init__(self, block: _Optional[bytes] = ..., priority: _Optional[int] = ..., cancel: _Optional[bool] = ..., wantType: _Optional[_Union[Message.Wantlist.WantType, str]] = ..., sendDontHave: _Optional[bool] = ...) -> None: ...
        ENTRIES_FIELD_NUMBER: _ClassVar[int]
        FULL_FIELD_NUMBER: _ClassVar[int]
        entries: _containers.RepeatedCompositeFieldContainer[Message.Wantlist.Entry]
        full: bool
        def __init__(self, entries: _Optional[_Iterable[_Union[Message.Wantlist.Entry, _Mapping]]] = ..., full: _Optional[bool] = ...) -> None: ...
    class Block(_message.Message):
        __slots__ = ("prefix", "data")
        PREFIX_FIELD_NUMBER: _ClassVar[int]
        DATA_FIELD_NUMBER: _ClassVar[int]
        prefix: bytes
        data: bytes
        def __init__(self, prefix: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...
    class BlockPresence(_message.Message):
        __slots__ = ("cid", "type")
        CID_FIELD_NUMBER: _ClassVar[int]
        TYPE_FIELD_NUMBER: _ClassVar[int]
        cid: bytes
        type: Message.BlockPresenceType
        def __init__(self, cid: _Optional[bytes] = ..., type: _Optional[_Union[Message.BlockPresenceType, str]] = ...) -> None: ...
    WANTLIST_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BLOCKPRESENCES_FIELD_NUMBER: _ClassVar[int]
    PENDINGBYTES_FIELD_NUMBER: _ClassVar[int]
    wantlist: Message.Wantlist
    blocks: _containers.RepeatedScalarFieldContainer[bytes]
    payload: _containers.RepeatedCompositeFieldContainer[Message.Block]
    blockPresences: _containers.RepeatedCompositeFieldContainer[Message.BlockPresence]
    pendingBytes: int
    def __init__(self, wantlist: _Optional[_Union[Message.Wantlist, _Mapping]] = ..., blocks: _Optional[_Iterable[bytes]] = ..., payload: _Optional[_Iterable[_Union[Message.Block, _Mapping]]] = ..., blockPresences: _Optional[_Iterable[_Union[Message.BlockPresence, _Mapping]]] = ..., pendingBytes: _Optional[int] = ...) -> None: ...
