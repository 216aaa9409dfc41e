"""The JSON request parser: orjson, with a nesting cap.

DRF's parser is the standard library's, which recurses once per level of nesting: a body of a few
thousand `[` ended in RecursionError, a 500, even on anonymous endpoints. orjson parses without
recursion and refuses anything malformed (NaN, Infinity, invalid UTF-8, lone surrogates); a body
nested deeper than JSON_MAX_DEPTH is refused too, since code that walks the data (the idempotency
fingerprint, error rendering) may recurse. Either is a ParseError: 400 `parse_error` in the error
shape of core/errors.py. The body's size is capped before it is read (core/middleware.py).
"""

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer


class JSONParser(BaseParser):
    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        limit = settings.JSON_MAX_DEPTH
        # Every level opens a bracket: a body with few brackets cannot be deep, and is not walked.
        if raw.count(b"[") + raw.count(b"{") > limit and nesting_exceeds(data, limit):
            raise ParseError(f"JSON parse error - nested deeper than {limit} levels.")
        return data


def nesting_exceeds(value, limit: int) -> bool:
    """Whether `value` has containers nested more than `limit` deep (without recursion)."""
    pending = [(value, 1)] if isinstance(value, (dict, list)) else []
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
