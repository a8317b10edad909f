"""A validated config rebuilt to take a third of the memory, with the same models and values.

A park of 10,000 sensors is 10,000 ``SensorConfig`` models held for the daemon's whole life.
pydantic gives each model a ``__dict__`` of its own (15 fields: 464 bytes) and a set of the
keys it was given (``model_fields_set``: 728 bytes for six keys).  CPython 3.11 can keep an
instance's attributes in a values array beside the object instead, with the keys shared by
every instance of the class (about 130 bytes for 15 fields); it does so for attributes set one
by one on an instance, as long as the class's shared keys already hold them.

So every config model class sets its fields once on a throwaway instance when it is created
(:func:`prime_shared_keys`, before validation can fill the class's key table otherwise), and
under the loader's validation context each model's own validator hands back a copy with its
attributes set one by one (:func:`compact_model`), with one shared record of given keys per
combination.  The models are of the same classes with equal values: they compare equal, dump,
copy and hash as before.  On an interpreter that lays objects out otherwise the copy changes
nothing but the fields sets.

The config is frozen, and pydantic copies a fields set before changing it
(``model_copy(update=…)``), so a shared set is never written to.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def prime_shared_keys(cls: type[BaseModel]) -> None:
    """Put the class's field names, in order, into its shared instance keys."""
    probe = object.__new__(cls)
    for name in cls.model_fields:
        object.__setattr__(probe, name, None)


#: the validation context key that asks for compact models; its value is the record of the
#: fields sets seen so far (one shared set per combination of given keys)
CONTEXT_KEY = "parkwatch.compact"


def compact_context(**context: Any) -> dict[str, Any]:
    """A validation context under which every config model comes out compact."""
    return {**context, CONTEXT_KEY: {}}


def compact_model(model: M, context: dict[str, Any] | None) -> M:
    """`model` as validated, or (under :func:`compact_context`) an equal compact copy of it.

    Called by each model's own validator, so the copy replaces the model before the next one
    is built: the memory the original held is used again at once, no two trees at a time."""
    shared = context.get(CONTEXT_KEY) if context else None
    if shared is None:
        return model  # validated for something else (a constructor call, the console)
    new = object.__new__(type(model))
    setattr_ = object.__setattr__
    for key, value in model.__dict__.items():
        setattr_(new, key, value)
    given = model.__pydantic_fields_set__
    setattr_(new, "__pydantic_fields_set__", shared.setdefault(frozenset(given), given))
    setattr_(new, "__pydantic_extra__", model.__pydantic_extra__)
    setattr_(new, "__pydantic_private__", getattr(model, "__pydantic_private__", None))
    return new
