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

import json
import os
import sys

from jsonschema import Draft202012Validator

EXPECT_KEYS = {"schema", "schema_path", "loader_path", "message"}


def format_path(path):
    """The loader's path notation: keys joined by '.', indices as [i]; "" for the root."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + str(part)
    return out


def schema_prefix(filename):
    """'platform-bad-base.json' -> 'platform'; 'policy.json' -> 'policy'."""
    stem = filename[: -len(".json")]
    for sep in "-_.":
        stem = stem.split(sep, 1)[0]
    return stem


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Checker:
    def __init__(self, schemas_dir, examples_dir):
        self.schemas_dir = schemas_dir
        self.examples_dir = examples_dir
        self.failures = 0
        self.validators = {}

    def result(self, name, ok, why=""):
        status = "ok" if ok else "FAIL"
        print("%-4s %s%s" % (status, name, (": " + why) if why else ""))
        if not ok:
            self.failures += 1

    def skip(self, name, why):
        print("skip %s: %s" % (name, why))

    def check_schemas(self):
        for entry in sorted(os.listdir(self.schemas_dir)):
            if not entry.endswith(".schema.json"):
                continue
            path = os.path.join(self.schemas_dir, entry)
            try:
                schema = load_json(path)
                Draft202012Validator.check_schema(schema)
            except Exception as e:  # any problem with a schema is a failure, reported by name
                self.result(path, False, str(e).splitlines()[0])
                continue
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
            if validator is None:
                continue
            try:
                instance = load_json(path)
            except (OSError, ValueError) as e:
                self.result(path, False, "cannot read: %s" % e)
                continue
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
            if errors:
                e = errors[0]
                self.result(path, False, "%s: %s (%d error(s))" % (format_path(e.absolute_path), e.message,
                                                                    len(errors)))
            else:
                self.result(path, True)

    def check_broken(self):
        broken_dir = os.path.join(self.examples_dir, "broken")
        if not os.path.isdir(broken_dir):
            return
        entries = sorted(os.listdir(broken_dir))
        for entry in entries:
            if entry.endswith(".expect") and entry[: -len(".expect")] + ".json" not in entries:
                self.result(os.path.join(broken_dir, entry), False, "no matching .json file")
        for entry in entries:
            if entry.endswith(".json"):
                self.check_one_broken(broken_dir, entry)

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
        if validator is None:
            return
        try:
            instance = load_json(path)
        except (OSError, ValueError) as e:
            self.result(path, False, "cannot read: %s" % e)
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
    checker = Checker(argv[1], argv[2])
    checker.check_schemas()
    checker.check_good()
    checker.check_broken()
    if checker.failures:
        print("%d failure(s)" % checker.failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
