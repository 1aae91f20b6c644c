"""Validates custom resources offline against their CustomResourceDefinitions.

usage: python crd_validate.py RENDERED.yaml CRD.yaml...   (the venv of check-deploy: PyYAML,
jsonschema)

For every object of RENDERED whose apiVersion and kind a CRD defines, the object is checked
against that version's `openAPIV3Schema` with JSON Schema (draft 4 semantics, which
Kubernetes' OpenAPI v3 subset follows). Strict: where a schema lists `properties` and says
nothing about others (and does not preserve unknown fields), other properties are refused,
as the API server would prune them. Prints one line per object; exit status 1 if any object
is invalid or if RENDERED holds none of the CRDs' kinds.
"""
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema with unknown properties refused wherever Kubernetes would prune them."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def main():
    rendered, crd_files = sys.argv[1], sys.argv[2:]
    schemas = {}
    for path in crd_files:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    schemas[(f"{group}/{version['name']}", kind)] = strict(
                        version["schema"]["openAPIV3Schema"])
    checked = failed = 0
    with open(rendered) as f:
        for obj in yaml.safe_load_all(f):
            if not obj:
                continue
            schema = schemas.get((obj.get("apiVersion"), obj.get("kind")))
            if schema is None:
                continue
            checked += 1
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=str)
            if errors:
                failed += 1
                for e in errors:
                    where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                    print(f"INVALID {name}: {where}: {e.message}")
            else:
                print(f"valid   {name} ({obj['apiVersion']})")
    if checked == 0:
        print("no object of the CRDs' kinds in", rendered)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
