"""A small typed Python client of the revflow API, blocking (:class:`Client`) and asynchronous
(:class:`AsyncClient`); problem documents become typed exceptions (:mod:`revflow.client.errors`).

It imports nothing of the server: an embedding product can use it on its own.
"""

from revflow.client import errors, models
from revflow.client.api import AsyncClient, Client, endpoints, is_id
from revflow.client.errors import RevflowError

__all__ = ["AsyncClient", "Client", "RevflowError", "endpoints", "errors", "is_id", "models"]
