"""The TLS context of outgoing requests, made once per process.

Making one loads the whole trust store (certifi's roots: ~40 ms here); every worker, webhook
sender and egress transport used to make its own, more than 0.1 s per worker started. A
context is only read once made — clients wrap their sockets with it — so one is shared.
"""

from __future__ import annotations

import functools
import os
import ssl

import httpx


def client_context(*, trust_env: bool) -> ssl.SSLContext:
    """httpx's own default context for a client of that ``trust_env``: certifi's roots, or,
    with ``trust_env``, the file of ``SSL_CERT_FILE`` or the directory of ``SSL_CERT_DIR``
    when either is set (read at each call, so a changed setting makes a new context)."""
    if not trust_env:
        return _context(None, None)
    return _context(os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)


@functools.cache
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # The settings are the cache's key; httpx reads the same ones from the environment.
    if cafile is None and capath is None:
        return httpx.create_ssl_context(trust_env=False)
    return httpx.create_ssl_context(trust_env=True)
