"""Reading a YAML config file into a pydantic model, with errors a person can act on.

Every message names the file, the key path (``hosts[0].tls.ca``) and what is wrong or
allowed; a file with several problems lists each on its own line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: Path, error: type[Exception]) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or ``error`` saying why there is none."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def validate(model: type[M], raw: dict[str, Any], path: Path, error: type[Exception]) -> M:
    """``model`` from ``raw``, or ``error`` listing every problem with its key path."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(describe(path, exc)) from exc


def describe(path: Path, exc: ValidationError) -> str:
    """One line per validation error: file, key path, cause."""
    lines = []
    for problem in exc.errors():
        key = key_path(problem["loc"])
        if problem["type"] == "extra_forbidden":
            lines.append(f"{path}: {key}: unknown key")
        elif problem["type"] == "missing":
            lines.append(f"{path}: {key}: required key is missing")
        else:
            value = problem["input"]
            got = f" (got {value!r})" if isinstance(value, str | int | float) else ""
            lines.append(f"{path}: {key}: {problem['msg']}{got}")
    return "\n".join(lines)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("hosts", 0, "tls")`` -> ``hosts[0].tls``. Parts in parentheses name the member
    of a tagged union a value was read as, not a key: ``("toolchains", "(list)", 1)`` ->
    ``toolchains[1]``."""
    keys = [p for p in loc if not (isinstance(p, str) and p.startswith("(") and p.endswith(")"))]
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in keys)
    return text.lstrip(".") or "(top level)"
