"""The one strict base every config model derives from (unknown keys are errors, no NaN)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from parkwatch.config.compact import compact_model, prime_shared_keys

ID_PATTERN = r"^[A-Za-z0-9\u4e00-\u9fff][A-Za-z0-9_.\-\u4e00-\u9fff]{0,63}$"

#: Identifiers end up in MQTT topics and alarm ids, so they may not hold '/', '+', '#' or spaces.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]




def _relative_to_config(p: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return p if p.is_absolute() or base is None else Path(base) / p


#: A file or directory path; a relative one is taken from the config file's directory.
ConfigPath = Annotated[Path, Field(strict=False), AfterValidator(_relative_to_config)]


class Strict(BaseModel):
    """Strict types: `area_m2: yes` or `port: "1883"` are errors, not silently converted."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        str_strip_whitespace=True,
        validate_default=True,
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        prime_shared_keys(cls)  # before any instance: see parkwatch.config.compact

    @model_validator(mode="after")
    def _compact(self, info: ValidationInfo) -> Self:
        return compact_model(self, info.context)
