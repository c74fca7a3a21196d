#!/usr/bin/python3
"""Computes NAME.ids.json for every NAME.json given, with osbuild HEAD's own code.

Usage: compute_ids.py HEAD_TREE NAME.json...  (see README.md)
HEAD_TREE is a checkout of github:osbuild/osbuild; it is the libdir too (its stages/,
inputs/, devices/, mounts/, sources/, runners/ and schemas/ are what HEAD's Index reads).
"""
import json
import sys

sys.path.insert(0, sys.argv[1])

from osbuild.formats import v2  # noqa: E402  pylint: disable=wrong-import-position
from osbuild.meta import Index  # noqa: E402  pylint: disable=wrong-import-position


def stage_ids(stage):
    return {
        "id": stage.id,
        "inputs": {name: ip.id for name, ip in stage.inputs.items()},
        "devices": {name: dev.id for name, dev in stage.devices.items()},
        "mounts": {name: mnt.id for name, mnt in stage.mounts.items()},
    }


def ids(path, index):
    with open(path, encoding="utf8") as f:
        desc = json.load(f)
    res = v2.validate(desc, index)
    if not res:
        for err in res:
            print(f"{path}: {err}", file=sys.stderr)
        sys.exit(1)
    manifest = v2.load(desc, index)
    return {
        "pipelines": [
            {
                "name": p.name,
                "id": p.id,
                "build": p.build,
                "stages": [stage_ids(s) for s in p.stages],
            }
            for p in manifest.pipelines.values()
        ],
        "inspect": v2.describe(manifest, with_id=True),
    }


def main():
    index = Index(sys.argv[1])
    for path in sys.argv[2:]:
        out = ids(path, index)
        with open(path.replace(".json", ".ids.json"), "w", encoding="utf8") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")


main()
