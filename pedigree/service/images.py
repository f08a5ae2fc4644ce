"""Placeholder: replaced by the module's owner."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI, *args: object, **kwargs: object) -> None:
    return None
