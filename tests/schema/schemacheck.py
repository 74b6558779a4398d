# SPDX-License-Identifier: Apache-2.0
"""What the example checkers (check-examples.py, check-rpc-examples.py) share: reading JSON, one
line a check, the schema files that are valid draft 2020-12 schemas, the broken examples with
their .expect files, and the exit status."""

import json
import os

from jsonschema import Draft202012Validator


UNREADABLE = object()  # what Checker.load_instance() returns for a file it cannot read


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Checker:
    """Counts failures; each check prints one line."""

    def __init__(self):
        self.failures = 0

    def result(self, name, ok, why=""):
        print("%-4s %s%s" % ("ok" if ok else "FAIL", name, (": " + why) if why else ""))
        if not ok:
            self.failures += 1

    def valid_schemas(self, schemas_dir, suffix):
        """(file name, path, schema) for every schemas_dir/*suffix that is a valid draft 2020-12
        schema; every other one is a failure, reported by name."""
        for entry in sorted(os.listdir(schemas_dir)):
            if not entry.endswith(suffix):
                continue
            path = os.path.join(schemas_dir, entry)
            try:
                schema = load_json(path)
                Draft202012Validator.check_schema(schema)
            except Exception as e:  # any problem with a schema is a failure, reported by name
                self.result(path, False, str(e).splitlines()[0])
                continue
            yield entry, path, schema

    # A checker without examples_dir/broken/: a failure, or nothing to check.
    BROKEN_REQUIRED = False

    def check_broken(self):
        """check_one_broken(broken_dir, entry) for every examples_dir/broken/*.json, after failing
        every .expect that has no .json."""
        broken_dir = os.path.join(self.examples_dir, "broken")
        if not os.path.isdir(broken_dir):
            if self.BROKEN_REQUIRED:
                self.result(broken_dir, False, "missing")
            return
        entries = sorted(os.listdir(broken_dir))
        for entry in entries:
            if entry.endswith(".expect") and entry[: -len(".expect")] + ".json" not in entries:
                self.result(os.path.join(broken_dir, entry), False, "no matching .json file")
        for entry in entries:
            if entry.endswith(".json"):
                self.check_one_broken(broken_dir, entry)

    def load_instance(self, path):
        """The JSON in path, or UNREADABLE (a failure) if it cannot be read."""
        try:
            return load_json(path)
        except (OSError, ValueError) as e:
            self.result(path, False, "cannot read: %s" % e)
            return UNREADABLE

    def exit_status(self):
        if self.failures:
            print("%d failure(s)" % self.failures)
            return 1
        return 0
