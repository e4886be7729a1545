"""A fast yes/no answer to "does this design satisfy schema.json?", compiled once into plain closures.

jsonschema walks a 1,000-run design in about two seconds; these closures take a few hundredths. They only
ever answer *yes* when jsonschema would find no error: on anything they are unsure of (a float where an
integer is expected, a value of an unusual type) they answer *no*, and schema_check then runs jsonschema,
which finds and words every problem. So a valid design costs a fast pass, an invalid one the same as before.

The schema keywords understood are those schema.json uses; `compiled()` returns None when the schema
grows a keyword this module does not know, and schema_check falls back to jsonschema alone.
"""
from __future__ import annotations

import re

_IGNORED = {"$schema", "$id", "$defs", "title", "description", "$comment", "examples", "default"}
_TYPES = {  # stricter than jsonschema (1.0 is no integer here, True no number): "no" only means "unsure"
    "object": lambda x: type(x) is dict,
    "array": lambda x: type(x) is list,
    "string": lambda x: type(x) is str,
    "integer": lambda x: type(x) is int,
    "number": lambda x: type(x) is int or type(x) is float,
    "boolean": lambda x: type(x) is bool,
    "null": lambda x: x is None,
}


class Unsupported(Exception):
    """A schema keyword or form this module does not compile."""


def _is_number(x) -> bool:
    return type(x) is int or type(x) is float


def _enum(values: list):
    allowed = {(type(v), v) for v in values if type(v) in (str, int, float, bool) or v is None}
    return lambda x: (type(x), x) in allowed if (type(x) in (str, int, float, bool) or x is None) else False


class _Compiler:
    def __init__(self, root: dict):
        self.root = root
        self.refs: dict[str, object] = {}

    def ref(self, ref: str):
        if not ref.startswith("#/$defs/"):
            raise Unsupported(ref)
        name = ref.rsplit("/", 1)[-1]
        if name not in self.refs:
            self.refs[name] = None  # recursion guard: filled below, looked up at call time
            self.refs[name] = self.node(self.root["$defs"][name])
        refs = self.refs
        return lambda x: refs[name](x)

    def _target(self, node: dict) -> dict:
        while "$ref" in node and len(node) == 1:
            node = self.root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    def evaluated_keys(self, node: dict) -> set:
        """Property names a (valid) subschema evaluates, for unevaluatedProperties: false."""
        node = self._target(node)
        if set(node) - {"type", "properties", "required", "allOf", "description", "title"}:
            raise Unsupported("unevaluatedProperties next to " + ", ".join(sorted(node)))
        keys = set(node.get("properties", {}))
        for sub in node.get("allOf", []):
            keys |= self.evaluated_keys(sub)
        return keys

    def node(self, node) -> object:
        if node is True or node == {}:
            return lambda x: True
        if node is False:
            return lambda x: False
        if not isinstance(node, dict):
            raise Unsupported(repr(node))
        checks = []
        for key, value in node.items():
            if key in _IGNORED:
                continue
            checks.append(self.keyword(node, key, value))
        if len(checks) == 1:
            return checks[0]
        return lambda x: all(check(x) for check in checks)

    def keyword(self, node: dict, key: str, value):
        if key == "$ref":
            return self.ref(value)
        if key == "type":
            tests = [_TYPES[t] for t in ([value] if isinstance(value, str) else value)]
            return tests[0] if len(tests) == 1 else (lambda x: any(t(x) for t in tests))
        if key == "enum":
            return _enum(value)
        if key == "const":
            return _enum([value])
        if key == "pattern":
            search = re.compile(value).search
            return lambda x: type(x) is not str or search(x) is not None
        if key in ("minLength", "maxLength"):
            low = key == "minLength"
            return lambda x: type(x) is not str or (len(x) >= value if low else len(x) <= value)
        if key in ("minItems", "maxItems"):
            low = key == "minItems"
            return lambda x: type(x) is not list or (len(x) >= value if low else len(x) <= value)
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            compare = {"minimum": lambda x: x >= value, "maximum": lambda x: x <= value,
                       "exclusiveMinimum": lambda x: x > value, "exclusiveMaximum": lambda x: x < value}[key]
            # jsonschema skips what is not a number (True included); an int or float subclass: unsure
            return lambda x: compare(x) if _is_number(x) else type(x) is bool or not isinstance(x, (int, float))
        if key == "required":
            return lambda x: type(x) is not dict or all(k in x for k in value)
        if key == "properties":
            subs = {name: self.node(sub) for name, sub in value.items()}
            return lambda x: type(x) is not dict or all(sub(x[k]) for k, sub in subs.items() if k in x)
        if key == "additionalProperties":
            if "patternProperties" in node:
                raise Unsupported("patternProperties")
            known = set(node.get("properties", {}))
            if value is False:
                return lambda x: type(x) is not dict or all(k in known for k in x)
            sub = self.node(value)
            return lambda x: type(x) is not dict or all(sub(v) for k, v in x.items() if k not in known)
        if key == "unevaluatedProperties":
            if value is not False:
                raise Unsupported("unevaluatedProperties with a schema")
            known = self.evaluated_keys({k: v for k, v in node.items() if k != "unevaluatedProperties"})
            return lambda x: type(x) is not dict or all(k in known for k in x)
        if key == "items":
            sub = self.node(value)
            return lambda x: type(x) is not list or all(sub(v) for v in x)
        if key == "propertyNames":
            sub = self.node(value)
            return lambda x: type(x) is not dict or all(sub(k) for k in x)
        if key in ("anyOf", "allOf"):
            subs = [self.node(sub) for sub in value]
            if key == "anyOf":
                return lambda x: any(sub(x) for sub in subs)
            return lambda x: all(sub(x) for sub in subs)
        if key == "not":
            target = self._target(value)
            if set(target) - {"enum", "const"}:
                raise Unsupported("not over " + ", ".join(sorted(target)))
            banned = {v for v in target.get("enum", []) + ([target["const"]] if "const" in target else [])
                      if type(v) is str}
            # only a string is surely unequal to every value; anything else: unsure
            return lambda x: type(x) is str and x not in banned
        raise Unsupported(key)


def compiled(schema: dict):
    """The schema as one function instance -> bool (True: surely valid), or None when it uses a keyword
    this module does not compile. Compile once and keep the result (schema_check caches it)."""
    try:
        return _Compiler(schema).node(schema)
    except (Unsupported, KeyError, TypeError, re.error):
        return None
