"""A cheaper ``__init__`` for the frozen, slotted dataclasses built on every hot path.

The ``__init__`` that :func:`dataclasses.dataclass` writes for a frozen class
stores each field with ``object.__setattr__(self, name, value)`` (its own
``__setattr__`` refuses). Core events and states are frozen, slotted
dataclasses (DESIGN.md §2), and the simulator builds millions of them: those
``__init__`` calls took 5.8 % of the CPU of a 2,000-node join. Writing each slot
through its member descriptor instead costs about half as much per field and
does exactly the same thing.

:func:`speed_up_init` replaces the generated ``__init__`` with one of the same
signature (names, order, defaults, keyword-only marker) that sets the same
fields; the original stays reachable as ``__dataclass_init__`` (tests compare
the two). Classes whose construction does more than setting fields keep the
generated one: ``__post_init__``, ``default_factory``, ``init=False`` fields
and ``InitVar`` pseudo-fields.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any


def speed_up_init(cls: type) -> None:
    """Give the finished frozen, slotted dataclass ``cls`` a descriptor-based ``__init__``.

    Does nothing for a class that is not (yet) a slotted dataclass of its own,
    or whose construction the plain field copy would not reproduce.
    """
    own = cls.__dict__
    if "__dataclass_fields__" not in own or "__slots__" not in own or "__init__" not in own:
        return
    if hasattr(cls, "__post_init__"):
        return
    declared = fields(cls)
    if len(declared) != len(own["__dataclass_fields__"]):
        return  # InitVar or ClassVar pseudo-fields: leave them to dataclasses
    namespace: dict[str, Any] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in declared:
        if not f.init or f.default_factory is not MISSING:
            return
        slot = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
        if slot is None or not hasattr(slot, "__set__"):
            return
        namespace[f"_set_{f.name}"] = slot.__set__
        param = f.name
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            param += f"=_default_{f.name}"
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _set_{f.name}(self, {f.name})")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # our own text, built from the field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = own["__init__"].__doc__
    init.__annotations__ = dict(own["__init__"].__annotations__)
    cls.__dataclass_init__ = own["__init__"]  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
