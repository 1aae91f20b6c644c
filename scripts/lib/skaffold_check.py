"""Cross-checks of skaffold.yaml against the repository (the JSON schema checks the shape):
the apiVersion is one we have a schema for, every artifact's Dockerfile exists, every
artifact image is used by a manifest and every built image in the manifests has an
artifact, every SERVICE build argument names a workspace binary, every port-forward targets
a rendered Service, every profile is preceded by a comment saying when to use it.

usage: python3 skaffold_check.py SKAFFOLD_YAML RENDERED_MANIFESTS SCHEMA_DIR
"""
import os
import re
import sys

import yaml


def main(skaffold_path, rendered_path, schema_dir):
    errors = []
    text = open(skaffold_path).read()
    config = yaml.safe_load(text)
    api = config.get("apiVersion", "")
    known = sorted(f[: -len(".json")] for f in os.listdir(schema_dir) if f.startswith("v4beta"))
    version = api.removeprefix("skaffold/")
    if version not in known:
        errors.append(f"apiVersion {api!r} is not one of {['skaffold/' + k for k in known]}")
    root = os.path.dirname(os.path.abspath(skaffold_path))

    docs = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
    images, services = set(), set()
    for doc in docs:
        if doc.get("kind") == "Service":
            services.add((doc["metadata"].get("namespace"), doc["metadata"]["name"]))
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images.add(c["image"])
    # images we build have no registry, tag or digest; the rest (postgres:16.6-bookworm) are pulled
    built_in_manifests = {i for i in images if not re.search(r"[:/@]", i)}

    members = set()
    for line in open(os.path.join(root, "Cargo.toml")):
        members.update(re.findall(r'"([a-z_-]+)"', line) if line.startswith("members") else [])

    artifacts = config.get("build", {}).get("artifacts", [])
    artifact_images = set()
    for a in artifacts:
        image = a["image"]
        artifact_images.add(image)
        dockerfile = os.path.join(root, a.get("context", "."), a.get("docker", {}).get("dockerfile", "Dockerfile"))
        if not os.path.isfile(dockerfile):
            errors.append(f"artifact {image}: Dockerfile {dockerfile} does not exist")
        service = a.get("docker", {}).get("buildArgs", {}).get("SERVICE")
        if service not in members or not os.path.isfile(os.path.join(root, service or "-", "src", "main.rs")):
            errors.append(f"artifact {image}: SERVICE={service!r} is not a workspace binary")
        if image not in images:
            errors.append(f"artifact {image} is used by no container in the manifests")
    for image in sorted(built_in_manifests - artifact_images):
        errors.append(f"manifests use image {image!r} that no artifact builds")

    kustomize_paths = list(config.get("manifests", {}).get("kustomize", {}).get("paths", []))
    for profile in config.get("profiles", []):
        for patch in profile.get("patches", []):
            if patch.get("path", "").startswith("/manifests/kustomize/paths"):
                value = patch.get("value", [])
                kustomize_paths += value if isinstance(value, list) else [value]
    for path in kustomize_paths:
        if not os.path.isfile(os.path.join(root, path, "kustomization.yaml")):
            errors.append(f"kustomize path {path} has no kustomization.yaml")

    for pf in config.get("portForward", []):
        if pf.get("resourceType") == "service" and (pf.get("namespace"), pf["resourceName"]) not in services:
            errors.append(f"portForward to service {pf.get('namespace')}/{pf['resourceName']}: no such Service")

    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*- name: (\S+)", line)
        if m and i > 0 and "profiles:" in "\n".join(lines[:i]) and not lines[i - 1].strip().startswith("#"):
            errors.append(f"profile {m.group(1)} has no comment saying when to use it")

    for e in errors:
        print(f"skaffold: {e}")
    print(f"skaffold: {api}, {len(artifacts)} artifacts, {len(config.get('profiles', []))} profiles, "
          f"{len(config.get('portForward', []))} port-forwards: {'OK' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
