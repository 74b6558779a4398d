#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Check brokerd's JSON Schemas against the example files.

usage: check-examples.py SCHEMAS_DIR EXAMPLES_DIR

- every SCHEMAS_DIR/*.schema.json must be a valid draft 2020-12 schema;
- every EXAMPLES_DIR/*.json must validate against the schema named by its file name
  prefix ("platform*.json" -> platform.schema.json, "policy*.json" -> policy.schema.json);
- every EXAMPLES_DIR/broken/<name>.json comes with <name>.expect:
    {"schema": "platform", "schema_path": "pools[0].base" or null,
     "loader_path": "...", "message": "..."}
  With a schema_path, the schema must report an error at exactly that path; with null
  (only the C loader can catch it) the schema must accept the file.
A prefix whose schema does not exist yet is skipped. Prints one line per file; exits 1
on any failure.
"""

import os
import sys

from jsonschema import Draft202012Validator

sys.dont_write_bytecode = True  # do not leave __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rpcschema import format_path  # noqa: E402  (lives next to this script)
from schemacheck import UNREADABLE, Checker, load_json  # noqa: E402

EXPECT_KEYS = {"schema", "schema_path", "loader_path", "message"}


def schema_prefix(filename):
    """'platform-bad-base.json' -> 'platform'; 'policy.json' -> 'policy'."""
    stem = filename[: -len(".json")]
    for sep in "-_.":
        stem = stem.split(sep, 1)[0]
    return stem


class ExampleChecker(Checker):
    def __init__(self, schemas_dir, examples_dir):
        super().__init__()
        self.schemas_dir = schemas_dir
        self.examples_dir = examples_dir
        self.validators = {}

    def skip(self, name, why):
        print("skip %s: %s" % (name, why))

    def check_schemas(self):
        for entry, path, schema in self.valid_schemas(self.schemas_dir, ".schema.json"):
            self.validators[entry[: -len(".schema.json")]] = Draft202012Validator(schema)
            self.result(path, True)

    def validator_for(self, name, prefix):
        if prefix in self.validators:
            return self.validators[prefix]
        if os.path.exists(os.path.join(self.schemas_dir, prefix + ".schema.json")):
            return None  # exists but failed check_schema: already reported
        self.skip(name, "no %s.schema.json yet" % prefix)
        return None

    def check_good(self):
        for entry in sorted(os.listdir(self.examples_dir)):
            path = os.path.join(self.examples_dir, entry)
            if not entry.endswith(".json") or not os.path.isfile(path):
                continue
            validator = self.validator_for(path, schema_prefix(entry))
            instance = self.load_instance(path) if validator else UNREADABLE
            if instance is UNREADABLE:
                continue
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
            if errors:
                e = errors[0]
                self.result(path, False, "%s: %s (%d error(s))" % (format_path(e.absolute_path), e.message,
                                                                    len(errors)))
            else:
                self.result(path, True)

    def check_one_broken(self, broken_dir, entry):
        path = os.path.join(broken_dir, entry)
        expect_path = path[: -len(".json")] + ".expect"
        prefix = schema_prefix(entry)
        try:
            expect = load_json(expect_path)
        except (OSError, ValueError) as e:
            self.result(path, False, "cannot read %s: %s" % (expect_path, e))
            return
        if not isinstance(expect, dict) or set(expect) != EXPECT_KEYS:
            self.result(path, False, "%s must hold exactly the keys %s" % (expect_path, sorted(EXPECT_KEYS)))
            return
        if expect["schema"] != prefix:
            self.result(path, False, "expect names schema %r but the file name says %r" % (expect["schema"], prefix))
            return
        if not isinstance(expect["loader_path"], str) or not isinstance(expect["message"], str) or not expect["message"]:
            self.result(path, False, "loader_path must be a string and message a non-empty string")
            return
        validator = self.validator_for(path, prefix)
        instance = self.load_instance(path) if validator else UNREADABLE
        if instance is UNREADABLE:
            return
        found = sorted({format_path(e.absolute_path) for e in validator.iter_errors(instance)})
        want = expect["schema_path"]
        if want is None:
            if found:
                self.result(path, False, "expected the schema to accept it (only the loader catches it), "
                            "but it reports errors at %s" % ", ".join(repr(p) for p in found))
            else:
                self.result(path, True, "schema accepts it, as expected")
        elif not isinstance(want, str):
            self.result(path, False, "schema_path must be a string or null")
        elif want in found:
            self.result(path, True, "schema rejects it at %r" % want)
        else:
            self.result(path, False, "expected a schema error at %r, got %s" % (
                want, ", ".join(repr(p) for p in found) if found else "none"))


def main(argv):
    if len(argv) != 3:
        print("usage: %s SCHEMAS_DIR EXAMPLES_DIR" % argv[0], file=sys.stderr)
        return 2
    checker = ExampleChecker(argv[1], argv[2])
    checker.check_schemas()
    checker.check_good()
    checker.check_broken()
    return checker.exit_status()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
