"""The high-availability overlay (k8s-ha: k8s/ plus the component k8s/ha) must keep the
properties it exists for. Schemas say a manifest is well-formed; this says it is the one we
mean:
  - PostgreSQL: a CloudNativePG Cluster of 3 instances, synchronous (ANY 1 or more) with
    dataDurability required and failoverQuorum, PodDisruptionBudgets and anti-affinity on;
    one login role and one database per service, each role's password Secret a
    kubernetes.io/basic-auth one that agrees with the service's DATABASE_URL
  - a Pooler of type rw in transaction mode, 2 pods or more, for that Cluster
  - every Deployment without `replicas`, with a HorizontalPodAutoscaler (minReplicas >= 2) on
    CPU requests every container has, a PodDisruptionBudget selecting its pods, a topology
    spread over kubernetes.io/hostname for its pods, rolling updates with maxUnavailable 0
  - every container's DATABASE_URL through the Pooler, DB_STATEMENT_CACHE false; auth's
    DATABASE_LISTEN_URL to the Cluster's rw Service
  - k8s/'s objects all kept but PostgreSQL's; NetworkPolicies that let exactly the flows
    through that the database needs (services -> Pooler -> instances, auth -> instances,
    instances <-> instances, operator -> instances), and not billing, order or notification
    straight to the instances
Also the CRDs' CEL rules the offline schema check cannot evaluate, for the values used here.

usage: python3 ha_check.py BASE_RENDERED.yaml HA_RENDERED.yaml
"""
import base64
import sys
from urllib.parse import urlsplit

import yaml

SERVICES = ["auth", "billing", "order", "notification"]
CNPG = "postgresql.cnpg.io/v1"
POSTGRES_OBJECTS = {("StatefulSet", "postgres"), ("Service", "postgres"), ("ConfigMap", "postgres-init"),
                    ("Secret", "postgres-credentials"), ("NetworkPolicy", "postgres")}


def load(path):
    with open(path) as f:
        return [o for o in yaml.safe_load_all(f) if o]


def original_name(obj):
    """A generated ConfigMap's or Secret's name without kustomize's hash suffix."""
    name = obj["metadata"]["name"]
    if obj["kind"] in ("ConfigMap", "Secret") and "-" in name and len(name.rsplit("-", 1)[1]) == 10:
        return name.rsplit("-", 1)[0]
    return name


def selects(selector, labels):
    """Whether a Kubernetes label selector selects these labels ({} selects everything)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def peer_matches(peer, pod):
    """A NetworkPolicy peer (from/to entry) against a pod {namespace, labels}."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod["namespace"]}):
            return False
    elif pod["namespace"] != "shop":
        return False
    return selects(peer.get("podSelector", {}), pod["labels"])


def port_allowed(rule, port):
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


def allowed(policies, source, destination, port):
    """Both ends of a flow: an egress rule of a policy selecting the source (in shop) and an
    ingress rule of a policy selecting the destination (in shop)."""
    def end(pod, other, direction, field):
        if pod["namespace"] != "shop":
            return True  # that namespace's policies are not ours
        chosen = [p for p in policies if selects(p["spec"]["podSelector"], pod["labels"])
                  and direction in p["spec"].get("policyTypes", ["Ingress"])]
        if not chosen:
            return True  # no policy isolates the pod in that direction
        # a rule without peers (no `to`/`from`) admits every peer
        return any((field not in rule or any(peer_matches(peer, other) for peer in rule[field]))
                   and port_allowed(rule, port)
                   for p in chosen for rule in p["spec"].get(direction.lower(), []) or [])
    return end(source, destination, "Egress", "to") and end(destination, source, "Ingress", "from")


def main(base_path, ha_path):
    errors, notes = [], []
    base, ha = load(base_path), load(ha_path)
    by = {(o["kind"], original_name(o)): o for o in ha}
    real_name = {(o["kind"], original_name(o)): o["metadata"]["name"] for o in ha}

    kept = {(o["kind"], original_name(o)) for o in base} - POSTGRES_OBJECTS
    for missing in sorted(kept - by.keys()):
        errors.append(f"{missing[0]} {missing[1]} of k8s/ is missing")
    for left in sorted(POSTGRES_OBJECTS & by.keys()):
        errors.append(f"{left[0]} {left[1]}: k8s/'s PostgreSQL is still deployed")

    clusters = [o for o in ha if o["apiVersion"] == CNPG and o["kind"] == "Cluster"]
    poolers = [o for o in ha if o["apiVersion"] == CNPG and o["kind"] == "Pooler"]
    if len(clusters) != 1 or len(poolers) != 1:
        errors.append(f"expected one Cluster and one Pooler, found {len(clusters)} and {len(poolers)}")
        return report(errors, notes)
    cluster, pooler = clusters[0], poolers[0]
    cname, cspec, pspec = cluster["metadata"]["name"], cluster["spec"], pooler["spec"]

    # the Cluster
    if cspec.get("instances") != 3:
        errors.append(f"Cluster {cname}: instances {cspec.get('instances')}, not 3")
    sync = cspec.get("postgresql", {}).get("synchronous") or {}
    if sync.get("method") not in ("any", "first") or not isinstance(sync.get("number"), int) or sync["number"] < 1:
        errors.append(f"Cluster {cname}: no synchronous replication (method {sync.get('method')}, "
                      f"number {sync.get('number')})")
    elif sync["number"] > cspec.get("instances", 1) - 1:
        errors.append(f"Cluster {cname}: {sync['number']} synchronous standbys of {cspec.get('instances', 1) - 1}")
    # dataDurability defaults to required; it is written out, so a change to it is deliberate
    if sync.get("dataDurability") != "required":
        errors.append(f"Cluster {cname}: synchronous dataDurability {sync.get('dataDurability')!r}, not 'required'")
    if sync.get("failoverQuorum") is not True:
        errors.append(f"Cluster {cname}: synchronous failoverQuorum is not true")
    if cspec.get("enablePDB") is False:
        errors.append(f"Cluster {cname}: enablePDB false (the operator keeps no PodDisruptionBudget)")
    affinity = cspec.get("affinity") or {}
    if affinity.get("enablePodAntiAffinity") is False or affinity.get("topologyKey", "kubernetes.io/hostname") \
            != "kubernetes.io/hostname":
        errors.append(f"Cluster {cname}: instances not kept apart per node (affinity {affinity})")
    if "imageName" in cspec and "imageCatalogRef" in cspec:
        errors.append(f"Cluster {cname}: imageName and imageCatalogRef are mutually exclusive")

    # roles, their Secrets, the databases
    roles = {r["name"]: r for r in cspec.get("managed", {}).get("roles", [])}
    databases = {o["spec"]["name"]: o["spec"] for o in ha if o["apiVersion"] == CNPG and o["kind"] == "Database"}
    for name in databases:
        if name in ("postgres", "template0", "template1"):
            errors.append(f"Database {name}: a name the CRD reserves")
    passwords = {}
    for service in SERVICES:
        role = roles.get(service)
        if not role or role.get("ensure", "present") != "present" or not role.get("login"):
            errors.append(f"Cluster {cname}: no login role {service}")
        else:
            secret_name = role.get("passwordSecret", {}).get("name")
            secret = next((o for o in ha if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name), None)
            if secret is None or secret.get("type") != "kubernetes.io/basic-auth":
                errors.append(f"role {service}: passwordSecret {secret_name} is not a rendered basic-auth Secret")
            else:
                data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
                if data.get("username") != service:
                    errors.append(f"role {service}: its Secret's username is {data.get('username')!r}")
                passwords[service] = data.get("password")
        db = databases.get(service)
        if not db or db.get("cluster", {}).get("name") != cname or db.get("owner") != service \
                or db.get("ensure", "present") != "present":
            errors.append(f"no Database {service} owned by {service} in Cluster {cname}")

    # the Pooler
    if pspec.get("cluster", {}).get("name") != cname:
        errors.append(f"Pooler {pooler['metadata']['name']}: not for Cluster {cname}")
    if pspec.get("type", "rw") != "rw":
        errors.append(f"Pooler {pooler['metadata']['name']}: type {pspec.get('type')}, not rw")
    if pspec.get("pgbouncer", {}).get("poolMode") != "transaction":
        errors.append(f"Pooler {pooler['metadata']['name']}: poolMode {pspec.get('pgbouncer', {}).get('poolMode')!r}, "
                      "not 'transaction'")
    if pspec.get("instances", 1) < 2:
        errors.append(f"Pooler {pooler['metadata']['name']}: {pspec.get('instances', 1)} instance(s), fewer than 2")
    if pooler["metadata"]["name"] == cname:
        errors.append("the Pooler may not be named as the Cluster")
    pooler_host, rw_host = pooler["metadata"]["name"], f"{cname}-rw"

    # the Deployments
    deployments = [o for o in ha if o["kind"] == "Deployment"]
    if sorted(d["metadata"]["name"] for d in deployments) != sorted(SERVICES):
        errors.append(f"Deployments {sorted(d['metadata']['name'] for d in deployments)}, expected {sorted(SERVICES)}")
    hpas = [o for o in ha if o["kind"] == "HorizontalPodAutoscaler"]
    pdbs = [o for o in ha if o["kind"] == "PodDisruptionBudget"]

    def env_of(container):
        env = {}
        for source in container.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    obj = next((o for o in ha if o["kind"] == kind and o["metadata"]["name"] == source[ref]["name"]), None)
                    if obj is None:
                        errors.append(f"container {container['name']}: {kind} {source[ref]['name']} is not rendered")
                        continue
                    data = obj.get("data", {})
                    env.update({k: base64.b64decode(v).decode() for k, v in data.items()} if kind == "Secret" else data)
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "secretKeyRef" in var.get("valueFrom", {}) or "configMapKeyRef" in var.get("valueFrom", {}):
                kind, ref = ("Secret", var["valueFrom"]["secretKeyRef"]) if "secretKeyRef" in var["valueFrom"] \
                    else ("ConfigMap", var["valueFrom"]["configMapKeyRef"])
                obj = next((o for o in ha if o["kind"] == kind and o["metadata"]["name"] == ref["name"]), {})
                value = obj.get("data", {}).get(ref["key"])
                env[var["name"]] = base64.b64decode(value).decode() if kind == "Secret" and value else value
        return env

    for d in deployments:
        name, spec = d["metadata"]["name"], d["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        if "replicas" in spec:
            errors.append(f"Deployment {name}: has replicas ({spec['replicas']}): kubectl apply would fight its HPA")
        hpa = [h for h in hpas if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
               and h["spec"]["scaleTargetRef"].get("name") == name]
        if len(hpa) != 1:
            errors.append(f"Deployment {name}: {len(hpa)} HorizontalPodAutoscalers")
        else:
            h = hpa[0]["spec"]
            if h.get("minReplicas", 1) < 2 or h.get("maxReplicas", 0) < h.get("minReplicas", 1):
                errors.append(f"HPA {name}: minReplicas {h.get('minReplicas', 1)}, maxReplicas {h.get('maxReplicas')}")
            on_cpu = any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in h.get("metrics", []))
            if on_cpu and not all(c.get("resources", {}).get("requests", {}).get("cpu") for c in pod["containers"]):
                errors.append(f"HPA {name}: on CPU utilization, but a container has no CPU request")
        pdb = [p for p in pdbs if selects(p["spec"].get("selector"), labels)]
        if not pdb or not any(p["spec"].get("minAvailable", 0) or "maxUnavailable" in p["spec"] for p in pdb):
            errors.append(f"Deployment {name}: no PodDisruptionBudget selecting its pods")
        spread = [c for c in pod.get("topologySpreadConstraints", [])
                  if c.get("topologyKey") == "kubernetes.io/hostname" and selects(c.get("labelSelector"), labels)]
        if not spread:
            errors.append(f"Deployment {name}: no topology spread of its pods over kubernetes.io/hostname")
        strategy = spec.get("strategy", {})
        rolling = strategy.get("rollingUpdate", {})
        if strategy.get("type", "RollingUpdate") != "RollingUpdate" or str(rolling.get("maxUnavailable")) != "0" \
                or str(rolling.get("maxSurge", "25%")) in ("0", "0%"):
            errors.append(f"Deployment {name}: rolling update {strategy}, not maxUnavailable 0 with a surge")
        for container in pod["containers"] + pod.get("initContainers", []):
            env = env_of(container)
            where = f"Deployment {name}, container {container['name']}"
            url = urlsplit(env.get("DATABASE_URL", ""))
            if url.hostname != pooler_host:
                errors.append(f"{where}: DATABASE_URL host {url.hostname!r}, not the Pooler {pooler_host}")
            elif url.username != name or url.path != f"/{name}" or url.password != passwords.get(name):
                errors.append(f"{where}: DATABASE_URL is not role {name} with its Secret's password on database {name}")
            if env.get("DB_STATEMENT_CACHE") != "false":
                errors.append(f"{where}: DB_STATEMENT_CACHE {env.get('DB_STATEMENT_CACHE')!r}, not 'false'")
            if name == "auth":
                listen = urlsplit(env.get("DATABASE_LISTEN_URL", ""))
                if listen.hostname != rw_host or listen.username != "auth" or listen.path != "/auth":
                    errors.append(f"{where}: DATABASE_LISTEN_URL {listen.hostname!r}, not {rw_host} as auth on auth")

    # NetworkPolicies: the database's flows, modelled on the pods' labels
    policies = [o for o in ha if o["kind"] == "NetworkPolicy"]
    service_pods = {s: {"namespace": "shop", "labels": next(
        (d["spec"]["template"]["metadata"]["labels"] for d in deployments if d["metadata"]["name"] == s), {})}
        for s in SERVICES}
    pooler_pod = {"namespace": "shop", "labels": {**(pspec.get("template", {}).get("metadata", {}).get("labels") or {}),
                                                  "cnpg.io/poolerName": pooler_host, "cnpg.io/podRole": "pooler",
                                                  "cnpg.io/cluster": cname}}
    instance_pod = {"namespace": "shop", "labels": {"cnpg.io/cluster": cname, "cnpg.io/podRole": "instance",
                                                    "cnpg.io/instanceName": f"{cname}-1"}}
    join_job_pod = {"namespace": "shop", "labels": {"cnpg.io/cluster": cname, "cnpg.io/jobRole": "join",
                                                    "cnpg.io/instanceName": f"{cname}-2"}}
    operator_pod = {"namespace": "cnpg-system", "labels": {"app.kubernetes.io/name": "cloudnative-pg"}}
    flows = [(f"{s} -> Pooler", service_pods[s], pooler_pod, 5432, True) for s in SERVICES]
    flows += [(f"{s} -> instances", service_pods[s], instance_pod, 5432, s == "auth") for s in SERVICES]
    flows += [("Pooler -> instances", pooler_pod, instance_pod, 5432, True),
              ("instance -> instance (replication)", instance_pod, instance_pod, 5432, True),
              ("join job -> instance (base backup)", join_job_pod, instance_pod, 5432, True),
              ("operator -> instances (status)", operator_pod, instance_pod, 8000, True),
              ("operator -> instances (postgres)", operator_pod, instance_pod, 5432, True)]
    for what, source, destination, port, want in flows:
        if allowed(policies, source, destination, port) != want:
            errors.append(f"NetworkPolicies: {what} on {port} is {'refused' if want else 'allowed'}")

    notes.append(f"Cluster {cname}: {cspec.get('instances')} instances, {sync.get('method', '?').upper()} "
                 f"{sync.get('number')} synchronous, dataDurability {sync.get('dataDurability')}, "
                 f"failoverQuorum {sync.get('failoverQuorum')}; roles and databases {', '.join(sorted(databases))}")
    notes.append(f"Pooler {pooler_host}: {pspec.get('type', 'rw')}, {pspec.get('pgbouncer', {}).get('poolMode')}, "
                 f"{pspec.get('instances', 1)} pods; {len(deployments)} Deployments through it, each with an HPA, "
                 f"a PDB and a spread; {len(flows)} network flows as intended")
    return report(errors, notes)


def report(errors, notes):
    for n in notes if not errors else []:
        print(f"ha: {n}")
    for e in errors:
        print(f"ha: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
