"""Migrations run through the engine fixture (an API client + a worker, one manual clock)."""

from tests.engine.conftest import engine, engine_settings

__all__ = ["engine", "engine_settings"]
