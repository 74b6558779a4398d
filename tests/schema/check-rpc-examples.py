#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Check brokerd's RPC JSON Schemas against docs/protocol.md and the example messages.

usage: check-rpc-examples.py SCHEMAS_RPC_DIR EXAMPLES_RPC_DIR [PROTOCOL_MD]

PROTOCOL_MD defaults to EXAMPLES_RPC_DIR/../../protocol.md (docs/examples/rpc -> docs/protocol.md).

- every SCHEMAS_RPC_DIR/*.json is a valid draft 2020-12 schema whose $id is
  https://brokerd.invalid/schemas/rpc/<file name>, and every property it declares has a
  description (its own, or that of the definition its $ref names);
- every method in the protocol's method tables (rows starting with "| `name`" under a
  "... methods" heading) has <method>.params.json and <method>.result.json, every notification
  (rows under the "Notifications" heading) has <name>.notification.json, and there is no schema
  besides those, common.json and envelope.json;
- the protocol's error table and envelope.json agree: every (code, name) row is accepted, and
  the same code with any other name is refused;
- every EXAMPLES_RPC_DIR/<schema stem>.json or <schema stem>--<variant>.json validates against
  <schema stem>.json ("region.share.result--bounce.json" -> region.share.result.json), and every
  method has at least one params and one result example, every notification one example;
- every EXAMPLES_RPC_DIR/broken/<name>.json comes with <name>.expect,
  {"schema": "<schema file name>", "path": "<JSON path>"}, and the schema refuses it with an
  error at exactly that path ("peers[0].access"; "" for the root) and nowhere else;
- rpcschema.py (the helper the integration tests import) accepts every result example wrapped in a
  response for its own method and refuses it for another, and likewise for notifications.
Prints one line per check; exits 1 on any failure.
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # do not leave __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpcschema  # noqa: E402  (lives next to this script)
from schemacheck import Checker, load_json  # noqa: E402

ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")
ERROR_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([a-z_]+)`\s*\|")


def parse_protocol(path):
    """(methods, notifications, errors) from the markdown tables of docs/protocol.md."""
    methods, notifications, errors = [], [], []
    section = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                section = line.strip("# \n").lower()
                continue
            m = ERROR_ROW.match(line)
            if m and section == "errors":
                errors.append((int(m.group(1)), m.group(2)))
                continue
            m = ROW.match(line)
            if not m:
                continue
            if section.endswith("methods") or section.startswith(("agent methods", "admin methods")):
                methods.append(m.group(1))
            elif section.startswith("notifications"):
                notifications.append(m.group(1))
    return methods, notifications, errors


def example_schema(filename):
    """'region.share.result--bounce.json' -> 'region.share.result.json'."""
    stem = filename[: -len(".json")]
    return stem.split("--", 1)[0] + ".json"


class RpcExampleChecker(Checker):
    BROKEN_REQUIRED = True

    def __init__(self, schemas_dir, examples_dir, protocol_path):
        super().__init__()
        self.schemas_dir = schemas_dir
        self.examples_dir = examples_dir
        self.protocol_path = protocol_path
        self.set = None

    # ---- the schemas themselves

    def check_schemas(self):
        failures = self.failures
        for entry, path, schema in self.valid_schemas(self.schemas_dir, ".json"):
            want = rpcschema.SCHEMA_BASE + entry
            if schema.get("$id") != want:
                self.result(path, False, "$id is %r, want %r" % (schema.get("$id"), want))
                continue
            self.result(path, True)
        if self.failures != failures:
            return False
        try:
            self.set = rpcschema.SchemaSet(self.schemas_dir)
        except (OSError, ValueError) as e:
            self.result(self.schemas_dir, False, str(e))
            return False
        return True

    def lookup_ref(self, current, ref):
        """The subschema a $ref names, within the loaded files (None if it names nothing)."""
        doc, _, pointer = ref.partition("#")
        schema = self.set.schemas.get(doc) if doc else self.set.schemas.get(current)
        if schema is None:
            return None
        for token in [t for t in pointer.split("/") if t]:
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(schema, dict) or token not in schema:
                return None
            schema = schema[token]
        return schema

    def check_descriptions(self):
        """Every declared property is described, and every $ref leads somewhere.
        False when a $ref is dangling: validating with it would only raise."""
        all_refs_ok = True
        for name, schema in sorted(self.set.schemas.items()):
            problems = []

            def walk(node, where, in_condition):
                if isinstance(node, list):
                    for i, item in enumerate(node):
                        walk(item, "%s[%d]" % (where, i), in_condition)
                    return
                if not isinstance(node, dict):
                    return
                if "$ref" in node:
                    doc = node["$ref"].partition("#")[0] or name
                    if self.lookup_ref(doc, node["$ref"]) is None:
                        problems.append("%s: $ref %r names nothing" % (where or "<root>", node["$ref"]))
                        nonlocal all_refs_ok
                        all_refs_ok = False
                for key, value in node.items():
                    cond = in_condition or key in ("if", "then", "else")
                    if key == "properties" and isinstance(value, dict) and not cond:
                        for prop, sub in value.items():
                            if isinstance(sub, bool):
                                continue
                            target = sub
                            if "description" not in sub and "$ref" in sub:
                                doc = sub["$ref"].partition("#")[0] or name
                                target = self.lookup_ref(doc, sub["$ref"]) or {}
                            if "description" not in target:
                                problems.append("%sproperties.%s has no description" % (where + "." if where else "", prop))
                    walk(value, "%s.%s" % (where, key) if where else key, cond)

            walk(schema, "", False)
            self.result(os.path.join(self.schemas_dir, name) + " (descriptions, refs)", not problems,
                        "; ".join(problems))
        return all_refs_ok

    # ---- against docs/protocol.md

    def check_protocol(self):
        try:
            methods, notifications, errors = parse_protocol(self.protocol_path)
        except OSError as e:
            self.result(self.protocol_path, False, "cannot read: %s" % e)
            return [], []
        if not methods or not notifications or not errors:
            self.result(self.protocol_path, False, "found %d methods, %d notifications, %d errors: the tables "
                        "did not parse" % (len(methods), len(notifications), len(errors)))
            return methods, notifications
        expected = {"common.json", "envelope.json"}
        for method in methods:
            for kind in ("params", "result"):
                name = "%s.%s.json" % (method, kind)
                expected.add(name)
                self.result("%s: %s has %s" % (self.protocol_path, method, name), self.set.has(name))
        for notification in notifications:
            name = "%s.notification.json" % notification
            expected.add(name)
            self.result("%s: %s has %s" % (self.protocol_path, notification, name), self.set.has(name))
        for name in sorted(set(self.set.schemas) - expected):
            self.result(os.path.join(self.schemas_dir, name), False, "not a method or notification of %s" %
                        self.protocol_path)

        names = [n for _, n in errors]
        enum = self.set.schemas["envelope.json"]["$defs"]["error_name"]["enum"]
        self.result("%s: error names match envelope.json" % self.protocol_path, sorted(names) == sorted(enum),
                    "" if sorted(names) == sorted(enum) else "protocol %s, envelope %s" % (
                        sorted(set(names) - set(enum)), sorted(set(enum) - set(names))))
        for code, name in errors:
            reply = {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": "m", "data": {"name": name}}}
            found = self.set.errors("envelope.json", reply)
            other = "forbidden" if name != "forbidden" else "invalid_request"
            wrong = dict(reply, error=dict(reply["error"], data={"name": other}))
            refused = bool(self.set.errors("envelope.json", wrong))
            self.result("%s: error %d %s" % (self.protocol_path, code, name), not found and refused,
                        "; ".join("%s: %s" % e for e in found) if found else
                        ("" if refused else "envelope.json also accepts it named %r" % other))
        return methods, notifications

    # ---- examples

    def check_good(self, methods, notifications):
        seen = set()
        for entry in sorted(os.listdir(self.examples_dir)):
            path = os.path.join(self.examples_dir, entry)
            if not entry.endswith(".json") or not os.path.isfile(path):
                continue
            schema = example_schema(entry)
            if not self.set.has(schema):
                self.result(path, False, "no schema %s" % schema)
                continue
            seen.add(schema)
            try:
                instance = load_json(path)
            except (OSError, ValueError) as e:
                self.result(path, False, "cannot read: %s" % e)
                continue
            errors = self.set.errors(schema, instance)
            self.result(path, not errors, "; ".join("%s: %s" % (p or "<root>", m) for p, m in errors[:3]) +
                        (" (%d errors)" % len(errors) if len(errors) > 3 else ""))
        wanted = ["%s.%s.json" % (m, k) for m in methods for k in ("params", "result")]
        wanted += ["%s.notification.json" % n for n in notifications]
        for schema in wanted:
            if schema not in seen:
                self.result(os.path.join(self.examples_dir, schema), False, "no example for %s" % schema)

    def check_helper(self, methods, notifications):
        """rpcschema's entry points, as the integration tests use them, on the examples: every result
        example wrapped in a response passes validate_reply for its method and fails for another one;
        every notification example passes validate_notification; error replies pass for any method."""
        def expect(what, fn, *args, fails=False):
            try:
                fn(*args)
            except rpcschema.RpcSchemaError as e:
                self.result("rpcschema: " + what, fails, "" if fails else str(e).replace("\n", " "))
                return
            self.result("rpcschema: " + what, not fails, "accepted" if fails else "")

        results = {m: load_json(os.path.join(self.examples_dir, m + ".result.json")) for m in methods
                   if os.path.exists(os.path.join(self.examples_dir, m + ".result.json"))}
        for i, (method, result) in enumerate(sorted(results.items())):
            reply = {"jsonrpc": "2.0", "id": i, "result": result}
            expect("validate_reply(%s)" % method, self.set.validate_reply, method, reply)
            other = "admin.reload" if method != "admin.reload" else "admin.stats"
            expect("validate_reply(%s) refuses the %s result" % (other, method), self.set.validate_reply, other,
                   reply, fails=True)
        if "region.get" in results and "admin.stats" in results:
            batch = [{"jsonrpc": "2.0", "id": "b", "result": results["admin.stats"]},
                     {"jsonrpc": "2.0", "id": "a", "result": results["region.get"]}]
            expect("validate_reply(batch)", self.set.validate_reply, {"a": "region.get", "b": "admin.stats"}, batch)
            expect("validate_reply(batch) with results swapped", self.set.validate_reply,
                   {"a": "admin.stats", "b": "region.get"}, batch, fails=True)
        error = {"jsonrpc": "2.0", "id": 7, "error": {"code": 1019, "message": "token used", "data": {"name": "token_used"}}}
        expect("validate_reply(error)", self.set.validate_reply, "region.attach", error)
        expect("validate_reply(error, wrong name)", self.set.validate_reply, "region.attach",
               dict(error, error=dict(error["error"], data={"name": "invalid_token"})), fails=True)
        expect("validate_reply(None, error)", self.set.validate_reply, None, error)
        expect("validate_reply(None, result)", self.set.validate_reply, None,
               {"jsonrpc": "2.0", "id": 1, "result": {"reloaded": True}}, fails=True)
        expect("validate_reply(no id)", self.set.validate_reply, "admin.reload",
               {"jsonrpc": "2.0", "result": {"reloaded": True}}, fails=True)
        for name in notifications:
            path = os.path.join(self.examples_dir, name + ".notification.json")
            if not os.path.exists(path):
                continue
            params = load_json(path)
            expect("validate_notification(%s)" % name, self.set.validate_notification,
                   {"jsonrpc": "2.0", "method": name, "params": params})
            expect("validate_notification(%s) with an id" % name, self.set.validate_notification,
                   {"jsonrpc": "2.0", "id": 1, "method": name, "params": params}, fails=True)
        expect("validate_notification(unknown)", self.set.validate_notification,
               {"jsonrpc": "2.0", "method": "region.frobbed", "params": {}}, fails=True)
        for method in methods:
            path = os.path.join(self.examples_dir, method + ".params.json")
            if os.path.exists(path):
                expect("validate_request(%s)" % method, self.set.validate_request,
                       {"jsonrpc": "2.0", "id": 1, "method": method, "params": load_json(path)})

    def check_one_broken(self, broken_dir, entry):
        path = os.path.join(broken_dir, entry)
        expect_path = path[: -len(".json")] + ".expect"
        try:
            expect = load_json(expect_path)
            instance = load_json(path)
        except (OSError, ValueError) as e:
            self.result(path, False, "cannot read it or its .expect: %s" % e)
            return
        if not isinstance(expect, dict) or set(expect) != {"schema", "path"} or \
                not isinstance(expect["schema"], str) or not isinstance(expect["path"], str):
            self.result(path, False, "%s must be {\"schema\": string, \"path\": string}" % expect_path)
            return
        if not self.set.has(expect["schema"]):
            self.result(path, False, "no schema %s" % expect["schema"])
            return
        found = self.set.error_paths(expect["schema"], instance)
        want = expect["path"]
        if found == [want]:
            self.result(path, True, "%s refuses it at %r" % (expect["schema"], want))
        else:
            self.result(path, False, "expected %s to refuse it at %r only, got errors at %s" % (
                expect["schema"], want, ", ".join(repr(p) for p in found) if found else "none"))


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: %s SCHEMAS_RPC_DIR EXAMPLES_RPC_DIR [PROTOCOL_MD]" % argv[0], file=sys.stderr)
        return 2
    protocol = argv[3] if len(argv) == 4 else os.path.join(argv[2], os.pardir, os.pardir, "protocol.md")
    checker = RpcExampleChecker(argv[1], argv[2], os.path.normpath(protocol))
    if checker.check_schemas() and checker.check_descriptions():
        methods, notifications = checker.check_protocol()
        checker.check_good(methods, notifications)
        checker.check_broken()
        checker.check_helper(methods, notifications)
    return checker.exit_status()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
