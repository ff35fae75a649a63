"""Everything the console serves ships inside the package (pyproject's package-data)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "revflow"


def test_every_template_and_static_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["revflow"]
    files = [
        path.relative_to(PACKAGE).as_posix()
        for folder in ("ui/templates", "ui/static")
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file()
    ]
    assert any(f.endswith("viz-global.js") for f in files)
    # fnmatch's * crosses "/", setuptools' does not: compare segment counts too.
    left_out = [
        f
        for f in files
        if not any(fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)
    ]
    assert not left_out, f"not shipped by pip install: {left_out}"
    vendor = PACKAGE / "ui" / "static" / "vendor"
    for library in vendor.iterdir():
        assert any(p.name.startswith("LICENSE") for p in library.iterdir()), library
