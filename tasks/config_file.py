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


class ConfigError(ValueError):
    """A config that cannot be used; the message names file, key and what is allowed."""


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types here
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the
    last one silently, so a duplicated ``hosts:`` would drop the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *anchor`` merges defaults that keys beside it override
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {line})", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def read_mapping(path: Path, error: type[Exception]) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or ``error`` saying why there is none."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from exc
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
            # A validator's own message is the cause; pydantic's "Value error, " is noise.
            message = problem["msg"].removeprefix("Value error, ")
            value = problem["input"]
            shown = isinstance(value, str | int | float) and repr(value) not in message
            got = f" (got {value!r})" if shown else ""
            lines.append(f"{path}: {key}: {message}{got}")
    return "\n".join(lines)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("hosts", 0, "tls")`` -> ``hosts[0].tls``. Parts in parentheses name the member
    of a tagged union a value was read as, not a key: ``("toolchains", "(list)", 1)`` ->
    ``toolchains[1]``."""
    keys = [p for p in loc if not (isinstance(p, str) and p.startswith("(") and p.endswith(")"))]
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in keys)
    return text.lstrip(".") or "(top level)"
