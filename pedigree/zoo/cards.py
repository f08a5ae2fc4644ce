"""Hub-style model cards: ``README.md`` with YAML front matter, as the Hub's model pages read them.

Front matter keys: ``base_model`` (a string or a list), ``base_model_relation`` (one of the Hub's
values adapter / merge / quantized / finetune), ``created_at`` (ISO-8601), ``license``,
``library_name``, ``pipeline_tag`` and ``tags``.  What a card declares is the recipe's
*declaration*, which may be missing or wrong on purpose; the truth lives in ``truth.json``.
"""

from __future__ import annotations

import json

HUB_RELATIONS = ("adapter", "merge", "quantized", "finetune")


def _yaml_value(value: object) -> str:
    """A YAML scalar (JSON-quoted strings are valid YAML)."""
    return json.dumps(value)


def render_card(
    model_id: str,
    *,
    description: str,
    created_at: str,
    pipeline_tag: str,
    tags: list[str],
    base_model: str | list[str] | None,
    base_model_relation: str | None,
    license_name: str = "apache-2.0",
    details: dict[str, object] | None = None,
) -> str:
    """The README.md text of one model."""
    if base_model_relation is not None and base_model_relation not in HUB_RELATIONS:
        raise ValueError(f"base_model_relation {base_model_relation!r} is not a Hub value")
    lines = ["---"]
    if base_model is not None:
        if isinstance(base_model, str):
            lines.append(f"base_model: {_yaml_value(base_model)}")
        else:
            lines.append("base_model:")
            lines += [f"- {_yaml_value(b)}" for b in base_model]
    if base_model_relation is not None:
        lines.append(f"base_model_relation: {base_model_relation}")
    lines += [
        f"created_at: {_yaml_value(created_at)}",
        f"license: {license_name}",
        "library_name: transformers",
        f"pipeline_tag: {pipeline_tag}",
        "tags:",
    ]
    lines += [f"- {_yaml_value(t)}" for t in tags]
    lines += ["---", "", f"# {model_id.split('/')[-1]}", "", description.strip(), ""]
    if details:
        lines += ["## Details", ""] + [f"- **{k}**: {v}" for k, v in details.items()] + [""]
    return "\n".join(lines)


def read_front_matter(text: str) -> dict[str, object]:
    """Parse the simple front matter written by ``render_card`` (scalars and ``-`` lists)."""
    if not text.startswith("---\n"):
        return {}
    block = text[4 : text.index("\n---", 4)]
    out: dict[str, object] = {}
    key = None
    for line in block.splitlines():
        if line.startswith("- ") and key is not None:
            current = out.get(key)
            out[key] = (current if isinstance(current, list) else []) + [_parse(line[2:])]
        elif ":" in line:
            key, _, rest = line.partition(":")
            key = key.strip()
            out[key] = _parse(rest.strip()) if rest.strip() else []
    return out


def _parse(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
