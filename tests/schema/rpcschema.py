# SPDX-License-Identifier: Apache-2.0
"""Validate brokerd JSON-RPC messages against schemas/rpc/.

Import it from a test (the directory of this file on sys.path) and check every live message:

    import rpcschema
    rpcschema.validate_reply("region.share", reply)      # one reply object
    rpcschema.validate_reply(None, reply)                # one reply that must be an error
    rpcschema.validate_reply({1: "region.get", 2: "region.list"}, batch_reply)   # a batch reply
    rpcschema.validate_notification(notification)
    rpcschema.validate_request(request)                   # what a test client is about to send

Failures raise RpcSchemaError, a subclass of AssertionError (so unittest and pytest count them
as test failures), naming the schema and every error with its JSON path ("peers[0].access").

The schemas come from $BROKERD_RPC_SCHEMAS if set, else ../../schemas/rpc next to this file.
SchemaSet(dir) loads another copy. Works with jsonschema 4.10 (Debian 12: RefResolver with a
store mapping every $id to its schema) and with newer releases (referencing.Registry).
"""

import json
import os

from jsonschema import Draft202012Validator

try:  # jsonschema >= 4.18
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:  # jsonschema 4.10 on Debian 12
    Registry = None
    from jsonschema import RefResolver

SCHEMA_BASE = "https://brokerd.invalid/schemas/rpc/"
ENVELOPE = "envelope.json"
DEFAULT_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "rpc"))


class RpcSchemaError(AssertionError):
    """A message does not match its schema. errors: [(path, message), ...]."""

    def __init__(self, what, errors):
        self.what = what
        self.errors = errors
        lines = ["%s: %s" % (path or "<root>", message) for path, message in errors]
        super().__init__("%s does not match its schema:\n  %s" % (what, "\n  ".join(lines)))


def format_path(path):
    """A jsonschema path as brokerd writes paths: keys joined by '.', indices as [i]; "" for the root."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + str(part)
    return out


def _leaf_errors(error):
    """The most specific errors under one jsonschema error (the causes of an anyOf/oneOf failure)."""
    if not error.context:
        return [error]
    out = []
    for sub in error.context:
        out.extend(_leaf_errors(sub))
    return out


class SchemaSet:
    """Every schema of one schemas/rpc directory, keyed by file name, cross-referenced by $id."""

    def __init__(self, schemas_dir=None):
        self.dir = schemas_dir or os.environ.get("BROKERD_RPC_SCHEMAS") or DEFAULT_DIR
        self.schemas = {}
        for entry in sorted(os.listdir(self.dir)):
            if not entry.endswith(".json"):
                continue
            with open(os.path.join(self.dir, entry), encoding="utf-8") as f:
                schema = json.load(f)
            want = SCHEMA_BASE + entry
            if not isinstance(schema, dict) or schema.get("$id") != want:
                raise ValueError("%s: $id must be %r" % (os.path.join(self.dir, entry), want))
            self.schemas[entry] = schema
        if ENVELOPE not in self.schemas:
            raise ValueError("%s: no %s" % (self.dir, ENVELOPE))
        if Registry is not None:
            self._registry = Registry().with_resources(
                (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
                for s in self.schemas.values())
        self._validators = {}

    def has(self, name):
        return name in self.schemas

    def validator(self, ref):
        """A validator for "<file>.json" or "<file>.json#/json/pointer" (cached)."""
        v = self._validators.get(ref)
        if v is None:
            if ref.split("#", 1)[0] not in self.schemas:
                raise KeyError("no schema %s in %s" % (ref, self.dir))
            wrapper = {"$ref": SCHEMA_BASE + ref}
            if Registry is not None:
                v = Draft202012Validator(wrapper, registry=self._registry)
            else:
                store = {s["$id"]: s for s in self.schemas.values()}
                v = Draft202012Validator(wrapper, resolver=RefResolver("", wrapper, store=store))
            self._validators[ref] = v
        return v

    def errors(self, ref, instance):
        """Every error as (path, message), sorted; the causes of anyOf/oneOf failures are spelled out."""
        out = set()
        for error in self.validator(ref).iter_errors(instance):
            for leaf in _leaf_errors(error):
                out.add((format_path(leaf.absolute_path), leaf.message))
        return sorted(out)

    def error_paths(self, ref, instance):
        """The paths of the errors jsonschema reports at the top level (before spelling out anyOf)."""
        return sorted({format_path(e.absolute_path) for e in self.validator(ref).iter_errors(instance)})

    def validate(self, ref, instance, what=None):
        errors = self.errors(ref, instance)
        if errors:
            raise RpcSchemaError(what or ref, errors)

    def validate_params(self, method, params):
        name = method + ".params.json"
        if name not in self.schemas:
            raise RpcSchemaError("params of %r" % method, [("", "no such method in schemas/rpc")])
        self.validate(name, {} if params is None else params, "params of %s" % method)

    def validate_result(self, method, result):
        name = method + ".result.json"
        if name not in self.schemas:
            raise RpcSchemaError("result of %r" % method, [("", "no such method in schemas/rpc")])
        self.validate(name, result, "result of %s" % method)

    def validate_request(self, obj):
        """A request or notification from a client: the envelope, then params by method.
        A request for a method the schemas do not know passes if its envelope is right, so that
        tests can send unknown methods on purpose."""
        self.validate(ENVELOPE + "#/$defs/call", obj, "request")
        name = obj["method"] + ".params.json"
        if name in self.schemas:
            self.validate(name, obj.get("params", {}), "params of %s" % obj["method"])

    def _validate_one_reply(self, method, reply):
        self.validate(ENVELOPE + "#/$defs/reply", reply, "reply to %s" % (method or "a request"))
        if "result" in reply:
            if method is None:
                raise RpcSchemaError("reply", [("result", "a successful reply, but no method was named to check it")])
            self.validate_result(method, reply["result"])

    def validate_reply(self, method, reply):
        """reply: one parsed reply line. method: the method called, or None for a reply that must be
        an error (to a line that was not a valid request, say); for a batch reply (a list), a
        mapping from each request id to its method."""
        if isinstance(reply, list):
            if not isinstance(method, dict):
                raise TypeError("a batch reply needs a mapping id -> method")
            self.validate(ENVELOPE + "#/$defs/batch", reply, "batch reply")
            for i, element in enumerate(reply):
                if "method" in element:
                    raise RpcSchemaError("batch reply", [("[%d]" % i, "a call in a batch reply")])
                rid = element.get("id")
                if rid not in method:
                    if "error" in element:
                        continue  # a request whose id could not be read: id null
                    raise RpcSchemaError("batch reply", [("[%d].id" % i, "no request had id %r" % rid)])
                self._validate_one_reply(method[rid], element)
            return
        if method is not None and not isinstance(method, str):
            raise TypeError("method must be a string or None for a single reply")
        self._validate_one_reply(method, reply)

    def validate_notification(self, obj):
        """A notification from the daemon: the envelope, then params against <method>.notification.json."""
        self.validate(ENVELOPE + "#/$defs/notification", obj, "notification")
        name = obj["method"] + ".notification.json"
        if name not in self.schemas:
            raise RpcSchemaError("notification %r" % obj["method"], [("method", "no such notification in schemas/rpc")])
        if "params" not in obj:
            raise RpcSchemaError("notification %s" % obj["method"], [("", "no params")])
        self.validate(name, obj["params"], "params of notification %s" % obj["method"])


_default = None


def default():
    """The SchemaSet of $BROKERD_RPC_SCHEMAS or the source tree, loaded on first use."""
    global _default
    if _default is None:
        _default = SchemaSet()
    return _default


def validate_reply(method, reply_obj):
    default().validate_reply(method, reply_obj)


def validate_notification(obj):
    default().validate_notification(obj)


def validate_request(obj):
    default().validate_request(obj)


def validate_params(method, params):
    default().validate_params(method, params)


def validate_result(method, result):
    default().validate_result(method, result)
