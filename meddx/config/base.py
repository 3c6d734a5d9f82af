"""The base of every configuration section: unknown keys are errors."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
