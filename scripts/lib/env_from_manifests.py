"""Prints, one `NAME=value` per line, the environment the manifests give a container: the
ConfigMaps and Secrets of its envFrom and env, with in-cluster addresses
(`http://billing:8080`, `@postgres:5432`) mapped to local ports. Used to run the release
binaries exactly as configured in k8s/.

usage: python3 env_from_manifests.py RENDERED_MANIFESTS KIND/NAME CONTAINER svc=PORT ...
       (postgres=PORT maps the database host, postgres=PORT,PORT to a multi-host URL with
       target_session_attrs=read-write; with k8s-ha/, shop-pg-pooler-rw=PORT and
       shop-pg-rw=PORT map the Pooler's and the primary's)
"""
import base64
import re
import sys

import yaml


def database(match, ports):
    host, rest = match.group(1), match.group(2)
    if host not in ports:
        return match.group(0)
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports[host].split(","))
    if "," in ports[host]:
        rest += ("&" if "?" in rest else "?") + "target_session_attrs=read-write"
    return f"@{hosts}/{rest}"


def main(rendered, workload, container_name, port_args):
    ports = dict(a.split("=", 1) for a in port_args)
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def data(kind, name):
        d = by[(kind, name)]
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
        return dict(d.get("data", {}))

    kind, name = workload.split("/")
    spec = by[(kind, name)]["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container_name)
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(data("ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(data("Secret", source["secretRef"]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = data("Secret", ref["name"])[ref["key"]]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = data("ConfigMap", ref["name"])[ref["key"]]
    for key, value in env.items():
        value = re.sub(r"http://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:8080",
                       lambda m: f"http://127.0.0.1:{ports[m.group(1)]}" if m.group(1) in ports else m.group(0), value)
        # a database host (postgres, or k8s-ha's shop-pg-pooler-rw and shop-pg-rw) given a port;
        # several (postgres=PRIMARY,STANDBY) make libpq's multi-host URL, which connects to
        # whichever of them takes writes
        value = re.sub(r"@([a-z0-9-]+)(?::5432)?/(.*)", lambda m: database(m, ports), value)
        print(f"{key}={value}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
