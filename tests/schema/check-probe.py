#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Check `brokerctl platform probe` on the host it runs on.

usage: check-probe.py BROKERCTL SCHEMAS_DIR

- on stdout, the description of this host validates against platform.schema.json and
  passes `brokerctl check platform` (the daemon's loader) without errors;
- with --output FILE the same text lands in FILE, and stdout stays empty;
- a --sysfs tree with no memory in it exits 1, writes nothing, and leaves an existing
  --output file as it was.
A host whose RAM the probe cannot read at all (no memory blocks, /proc/iomem hidden) makes
the first checks meaningless: they are skipped (exit 77), the rest still run.
Prints one line per check; exits 1 on any failure.
"""

import json
import os
import subprocess
import sys
import tempfile

from jsonschema import Draft202012Validator


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    brokerctl, schemas_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(schemas_dir, "platform.schema.json"), encoding="utf-8") as f:
        validator = Draft202012Validator(json.load(f))
    failures = 0
    skipped = False

    def result(name, ok, why=""):
        nonlocal failures
        print("%s %s%s" % ("ok  " if ok else "FAIL", name, (": " + why) if why and not ok else ""))
        if not ok:
            failures += 1

    def run(*args):
        return subprocess.run([brokerctl, "platform", "probe", *args], capture_output=True, text=True, check=False)

    host = run()
    sys.stderr.write(host.stderr)
    if host.returncode == 1 and "no RAM could be read" in host.stderr:
        print("skip host: the probe cannot read this host's RAM")
        skipped = True
    else:
        result("host: exit status 0", host.returncode == 0, "exit %d" % host.returncode)
        try:
            doc = json.loads(host.stdout)
        except ValueError as e:
            result("host: stdout is JSON", False, str(e))
            doc = None
        if doc is not None:
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            result("host: valid against platform.schema.json", not errors,
                   "; ".join("%s: %s" % ("/".join(map(str, e.absolute_path)), e.message) for e in errors))
            result("host: memory has banks", bool(doc.get("memory")))
            result("host: pools left to the administrator", doc.get("pools") == [])
            result("host: every device owned by \"host\"",
                   all(d.get("owner") == "host" for d in doc.get("devices", [])))

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "platform.json")
            out = run("--output", path)
            result("host --output: exit status 0", out.returncode == 0, "exit %d" % out.returncode)
            result("host --output: nothing on stdout", out.stdout == "", repr(out.stdout[:80]))
            try:
                with open(path, encoding="utf-8") as f:
                    written = f.read()
            except OSError as e:
                written = None
                result("host --output: file written", False, str(e))
            if written is not None:
                result("host --output: same text as stdout", written == host.stdout)
                check = subprocess.run([brokerctl, "--json", "check", "platform", path], capture_output=True,
                                       text=True, check=False)
                verdict = json.loads(check.stdout) if check.stdout else {}
                result("host: brokerctl check platform finds no errors",
                       check.returncode == 0 and verdict.get("errors") == 0, check.stdout + check.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "platform.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write("old\n")
        empty = run("--sysfs", os.path.join(tmp, "empty"), "--output", path)
        result("empty sysfs: exit status 1", empty.returncode == 1, "exit %d" % empty.returncode)
        result("empty sysfs: says why", "no RAM could be read" in empty.stderr, empty.stderr)
        with open(path, encoding="utf-8") as f:
            result("empty sysfs: --output file untouched", f.read() == "old\n")
        result("empty sysfs: no temp file left", sorted(os.listdir(tmp)) == ["platform.json"], str(os.listdir(tmp)))

    usage = subprocess.run([brokerctl, "platform", "list"], capture_output=True, text=True, check=False)
    result("platform list: usage error", usage.returncode == 2, "exit %d" % usage.returncode)
    usage = subprocess.run([brokerctl, "status", "--sysfs", "/"], capture_output=True, text=True, check=False)
    result("--sysfs with another verb: usage error", usage.returncode == 2, "exit %d" % usage.returncode)

    print("%d failed" % failures)
    if failures:
        return 1
    return 77 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
