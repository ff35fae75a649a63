"""Workflows as code: workflow files, their diff against the server, ``apply`` and ``export``.

A workflow file (YAML or JSON) holds one workflow: ``name`` (how it is matched on the server),
optional ``description``, ``definition`` and optional ``change_summary``. Everything here goes
through the API with :mod:`revflow.client`; the diff is the pure :func:`revflow.diff.compare`
of the server's version and the file, with the live executions of that version at each step,
so it reads exactly like the API's ``compare?format=text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from revflow.client import Client
from revflow.client.errors import NotFound
from revflow.client.models import Version, Workflow
from revflow.definition.loading import load_definition_text
from revflow.diff import Comparison, compare, render_text

SUFFIXES = (".yaml", ".yml", ".json")
KEYS = {"name", "description", "definition", "change_summary"}


class FileProblem(ValueError):
    """A workflow file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class WorkflowFile:
    path: Path
    name: str
    definition: dict[str, Any]
    description: str | None = None
    change_summary: str | None = None


def read_file(path: Path) -> WorkflowFile:
    """One workflow file, checked for its keys (the definition is validated by the server)."""
    try:
        document = load_definition_text(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FileProblem(f"{path}: {error}") from None
    if not isinstance(document, dict):
        raise FileProblem(f"{path}: expected an object with name and definition")
    unknown = sorted(set(document) - KEYS)
    if unknown:
        raise FileProblem(
            f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(KEYS))})"
        )
    name, definition = document.get("name"), document.get("definition")
    if not isinstance(name, str) or not name.strip():
        raise FileProblem(f"{path}: 'name' is required (the workflow's name)")
    if not isinstance(definition, dict):
        raise FileProblem(f"{path}: 'definition' is required and must be an object")
    for key in ("description", "change_summary"):
        if document.get(key) is not None and not isinstance(document[key], str):
            raise FileProblem(f"{path}: {key!r} must be text")
    return WorkflowFile(
        path, name, definition, document.get("description"), document.get("change_summary")
    )


def read_files(path: Path) -> list[WorkflowFile]:
    """The workflow files at ``path``: the file itself, or a folder's files (``*.yaml``,
    ``*.yml``, ``*.json``, subfolders included, in name order). Two files may not name the
    same workflow."""
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not paths:
            raise FileProblem(f"{path}: no .yaml, .yml or .json file in this folder")
    elif path.exists():
        paths = [path]
    else:
        raise FileProblem(f"{path}: no such file or folder")
    files = [read_file(p) for p in paths]
    seen: dict[str, Path] = {}
    for file in files:
        if file.name in seen:
            raise FileProblem(f"{file.path} and {seen[file.name]} both define {file.name!r}")
        seen[file.name] = file.path
    return files


@dataclass
class FileDiff:
    """A workflow file beside the server: its workflow (None: new), the version compared
    against (None: the workflow has none) and the comparison with its live impact."""

    file: WorkflowFile
    workflow: Workflow | None
    base: Version | None
    comparison: Comparison | None
    affected: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.comparison is None or self.comparison.has_changes

    @property
    def live_breaking(self) -> int:
        """Live executions that the breaking changes reach."""
        return sum(self.affected)

    def text(self) -> str:
        """The diff in the text format of ``compare?format=text`` (a new workflow: its
        definition as added)."""
        before = (
            "(no version)" if self.base is None else f"v{self.base.number} ({self.base.semver})"
        )
        if self.comparison is None:
            comparison = compare({}, self.file.definition)
            return render_text(comparison, before, str(self.file.path))
        return render_text(self.comparison, before, str(self.file.path), affected=self.affected)


def diff_file(api: Client, file: WorkflowFile, against: int | None = None) -> FileDiff:
    """Compare a file with its workflow's latest version (or version ``against``)."""
    try:
        workflow = api.find_workflow(file.name)
    except NotFound:
        if against is not None:
            raise
        return FileDiff(file, None, None, None)
    if against is not None:
        base: Version | None = api.get_version(workflow.id, against)
    else:
        base = api.latest_version(workflow.id)
    if base is None:
        return FileDiff(file, workflow, None, None)
    comparison = compare(base.definition or {}, file.definition)
    by_step = api.version_stats(workflow.id, base.number).by_step
    live = sum(by_step.values())
    affected = [live if b.step is None else by_step.get(b.step, 0) for b in comparison.breaking]
    return FileDiff(file, workflow, base, comparison, affected)


@dataclass
class Applied:
    """What ``apply`` did for one file."""

    workflow: Workflow
    version: Version | None  # the version created, or None
    published: Version | None = None  # the version published (or canaried), if any
    described: bool = False  # the description was changed


def apply_diff(
    api: Client,
    diff: FileDiff,
    *,
    summary: str | None = None,
    publish: bool = False,
    canary_percent: int | None = None,
) -> Applied:
    """Make the server match the file: a new version only when the content changed."""
    file = diff.file
    summary = summary or file.change_summary or f"applied from {file.path.name}"
    workflow = diff.workflow
    described = False
    if workflow is None:
        workflow = api.create_workflow(file.name, description=file.description or "")
    elif file.description is not None and file.description != workflow.description:
        workflow = api.update_workflow(workflow.id, description=file.description)
        described = True
    created: Version | None = None
    if diff.changed:
        created = api.create_version(
            workflow.id,
            file.definition,
            summary,
            base_version=diff.base.number if diff.base else None,
            publish=publish,
        )
    target = created or diff.base
    published: Version | None = None
    if target is not None and canary_percent is not None and target.status == "draft":
        published = api.publish_version(workflow.id, target.number, canary_percent=canary_percent)
    elif target is not None and publish:
        if created is not None:
            published = created
        elif target.status == "draft":
            published = api.publish_version(workflow.id, target.number)
    return Applied(api.get_workflow(workflow.id), created, published, described)


def export_document(workflow: Workflow, version: Version) -> dict[str, Any]:
    """The workflow file of a version: ``apply`` accepts it unchanged."""
    document: dict[str, Any] = {"name": workflow.name}
    if workflow.description:
        document["description"] = workflow.description
    document["definition"] = version.definition or {}
    return document


class _Dumper(yaml.SafeDumper):
    """Block-style YAML in the definition's own key order; strings that YAML 1.1 would read
    as something else (``on``, ``yes``, dates) are quoted by the safe dumper already."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(document: Mapping[str, Any]) -> str:
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
