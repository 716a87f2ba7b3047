"""The descriptor-based ``__init__`` of core events and states matches the dataclass one."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from dataclasses import InitVar, dataclass, field

import pytest

import zikade_py.core
from zikade_py.core.event import Traced
from zikade_py.core.frozen_init import speed_up_init
from zikade_py.core.trace import Trace


def _all_traced() -> list[type]:
    for info in pkgutil.walk_packages(zikade_py.core.__path__, "zikade_py.core."):
        importlib.import_module(info.name)
    found: list[type] = []
    todo = list(Traced.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__:
            found.append(cls)
    return found


TRACED = _all_traced()


def test_every_core_event_and_state_is_sped_up() -> None:
    assert len(TRACED) > 100
    slow = [c.__qualname__ for c in TRACED if "__dataclass_init__" not in c.__dict__]
    assert slow == []
    assert "__dataclass_init__" in Trace.__dict__


@pytest.mark.parametrize("cls", [*TRACED, Trace], ids=lambda c: c.__qualname__)
def test_same_signature_and_same_fields(cls: type) -> None:
    fast = cls.__init__  # type: ignore[misc]
    generated = cls.__dataclass_init__  # type: ignore[attr-defined]
    assert inspect.signature(fast) == inspect.signature(generated)
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for param in list(inspect.signature(fast).parameters.values())[1:]:
        value = object()
        if param.kind is param.KEYWORD_ONLY:
            kwargs[param.name] = value
        else:
            args.append(value)
    built = cls(*args, **kwargs)
    reference: object = object.__new__(cls)
    generated(reference, *args, **kwargs)
    for f in dataclasses.fields(cls):
        assert getattr(built, f.name) is getattr(reference, f.name)
    defaults = cls(*args)
    reference = object.__new__(cls)
    generated(reference, *args)
    assert defaults == reference
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, None)


def test_classes_doing_more_than_copying_fields_keep_the_generated_init() -> None:
    @dataclass(frozen=True, slots=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class WithFactory:
        a: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class WithInitFalse:
        a: int = field(init=False, default=1)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int]

    @dataclass(frozen=True)
    class NotSlotted:
        a: int

    for cls in (WithPostInit, WithFactory, WithInitFalse, WithInitVar, NotSlotted):
        speed_up_init(cls)
        assert "__dataclass_init__" not in cls.__dict__, cls.__qualname__
