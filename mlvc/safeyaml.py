"""YAML from files a cloned repository controls (pointers, .mlvc/config, params files), bounded.

`yaml.safe_load` runs no code, but it still expands aliases: a 712-byte "billion laughs"
document (anchors referring to anchors) becomes gigabytes of lists.  mlvc never writes anchors,
aliases or deep nesting, so a document that has any is refused after a token scan, which costs
time and memory linear in the (capped) input size, before anything is built.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # nested collections; mlvc writes at most 3


class YamlRefused(ValueError):
    """A document outside what mlvc reads: too large, anchors/aliases, too deep, or not YAML."""


def load(text: str | bytes, max_bytes: int) -> Any:
    """The document in `text`, or YamlRefused (its message says why, in one line)."""
    import yaml

    if len(text) > max_bytes:
        raise YamlRefused(f"{len(text)} bytes, more than the {max_bytes} allowed")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    opening = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
               yaml.FlowSequenceStartToken)
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=loader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                raise YamlRefused("anchors and aliases (&name, *name) are not allowed")
            if isinstance(token, opening):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(token, closing):
                depth -= 1
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise YamlRefused(f"not valid YAML ({first})") from None
