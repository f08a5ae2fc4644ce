"""Placeholder: replaced by the module's owner (registers its commands on import)."""

from __future__ import annotations
