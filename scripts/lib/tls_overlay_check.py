"""The HTTPS overlay (k8s-tls) must differ from k8s/ exactly by: TLS and an HTTPS redirect on
every Ingress, and SESSION_COOKIE_SECURE "true" for auth (which k8s/ keeps "false" for
plain-HTTP arch.homework). Anything else it changed would deploy untested manifests.
Usage: tls_overlay_check.py BASE.yaml TLS.yaml"""
import sys

import yaml


def objects(path):
    with open(path) as f:
        return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(f) if o}


def main(base_path, tls_path):
    base, tls = objects(base_path), objects(tls_path)
    errors = []
    if base.keys() != tls.keys():
        errors.append(f"different objects: {sorted(base.keys() ^ tls.keys())}")
    cookie = ("ConfigMap", "auth-config")
    if base[cookie]["data"].get("SESSION_COOKIE_SECURE") != "false":
        errors.append("k8s/: auth's SESSION_COOKIE_SECURE should be \"false\" (plain HTTP)")
    if tls[cookie]["data"].get("SESSION_COOKIE_SECURE") != "true":
        errors.append("k8s-tls: auth's SESSION_COOKIE_SECURE is not \"true\"")
    for key in sorted(base.keys() & tls.keys()):
        expected, got = yaml.safe_load(yaml.safe_dump(base[key])), tls[key]
        if key == cookie:
            expected["data"]["SESSION_COOKIE_SECURE"] = "true"
        if key[0] == "Ingress":
            hosts = sorted({r["host"] for r in got["spec"]["rules"]})
            tls_hosts = sorted(h for t in got["spec"].get("tls", []) for h in t.get("hosts", []))
            if tls_hosts != hosts or not all(t.get("secretName") for t in got["spec"]["tls"]):
                errors.append(f"Ingress {key[1]}: TLS for {tls_hosts}, rules for {hosts}")
            if got["metadata"].get("annotations", {}).get(
                    "nginx.ingress.kubernetes.io/force-ssl-redirect") != "true":
                errors.append(f"Ingress {key[1]}: no HTTPS redirect")
            expected["spec"]["tls"] = got["spec"].get("tls")
            expected["metadata"].setdefault("annotations", {})[
                "nginx.ingress.kubernetes.io/force-ssl-redirect"] = "true"
        if expected != got:
            errors.append(f"{key[0]} {key[1]}: changed beyond TLS and the cookie")
    for e in errors:
        print(f"k8s-tls: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
