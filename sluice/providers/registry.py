"""Provider kind → adapter. Adapter modules are imported on first use."""

from __future__ import annotations

import importlib

from sluice.providers.base import ProviderAdapter
from sluice.providers.openai import ADAPTERS as OPENAI_ADAPTERS

_NATIVE = {"anthropic": "sluice.providers.anthropic", "gemini": "sluice.providers.gemini", "tgi": "sluice.providers.tgi"}


def adapter_for(kind: str) -> ProviderAdapter:
    if kind in OPENAI_ADAPTERS:
        return OPENAI_ADAPTERS[kind]
    if kind in _NATIVE:
        return importlib.import_module(_NATIVE[kind]).ADAPTER
    raise KeyError(f"unknown provider kind '{kind}'")


def family_of(kind: str) -> str:
    """The wire dialect family: parameters written for one family mean nothing to another."""
    return kind if kind in _NATIVE else "openai"
