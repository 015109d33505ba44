"""Checks giftd's deploy kit without a Docker engine or a cluster.

Parses every YAML file of the repository (multi-document too) and checks
the structure that matters: the compose stack (services, health checks,
giftd waiting for a healthy database, mounted files that exist), the
Kubernetes manifests (kinds, probes, non-root, read-only root, resources,
selectors that match), Grafana's provisioning, the Dockerfile (multi-stage,
static, non-root) and that every GIFTD_ setting they set is documented in
docs/configuration.md. Run by .ci/run; exits non-zero on the first list of problems.
"""
import glob
import os
import re
import sys

import yaml

root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.chdir(root)
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


files = sorted(
    p for p in glob.glob("**/*.y*ml", recursive=True) + glob.glob(".*/**/*.y*ml", recursive=True)
    if not p.startswith((".git/", ".giftd-dev/"))
)
docs = {}
for path in files:
    try:
        docs[path] = load_all(path)
    except yaml.YAMLError as e:
        problems.append(f"{path}: not valid YAML: {e}")
check("docker-compose.yml" in docs, "docker-compose.yml missing")

settings_doc = open("docs/configuration.md").read()
settings_used = set()

# docker-compose.yml
compose = docs.get("docker-compose.yml", [{}])[0]
services = compose.get("services", {})
for name in ("postgres", "giftd", "prometheus", "grafana"):
    check(name in services, f"compose: service {name} missing")
pg, giftd = services.get("postgres", {}), services.get("giftd", {})
check("pg_isready" in str(pg.get("healthcheck", {}).get("test")), "compose: postgres needs a pg_isready healthcheck")
check(giftd.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
      "compose: giftd must wait for postgres to be service_healthy")
check("healthcheck" in giftd, "compose: giftd needs a healthcheck")
check(giftd.get("build") is not None, "compose: giftd must be built from the Dockerfile")
env = giftd.get("environment", {})
check("DATABASE_URL" in env, "compose: giftd needs DATABASE_URL")
check(env.get("GIFTD_MIGRATE", "true") != "false", "compose: giftd must apply migrations at start")
settings_used |= {k for k in env if k.startswith("GIFTD_")}
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("./"):
            check(os.path.exists(src), f"compose: {name} mounts {src}, which does not exist")
    for p in svc.get("ports", []):
        check(str(p).startswith("127.0.0.1:"), f"compose: {name} publishes {p} beyond loopback")

# deploy/k8s
kinds = {}
for path in sorted(glob.glob("deploy/k8s/*.yaml")):
    for d in docs.get(path, []):
        for key in ("apiVersion", "kind"):
            check(key in d, f"{path}: a document lacks {key}")
        if d.get("kind") != "Kustomization":
            check(d.get("metadata", {}).get("name"), f"{path}: a {d.get('kind')} has no metadata.name")
        kinds.setdefault(d.get("kind"), []).append((path, d))
for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret", "Kustomization"):
    check(kind in kinds, f"k8s: no {kind}")
for path, dep in kinds.get("Deployment", []):
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
          f"{path}: selector does not match the pod labels")
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{path}: pod must set runAsNonRoot")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{path}: {c['name']} needs readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{path}: {c['name']} must forbid privilege escalation")
        check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{path}: readiness must be /readyz")
        check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{path}: liveness must be /healthz")
        check(c.get("resources", {}).get("requests"), f"{path}: {c['name']} needs resource requests")
        check(any(e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])), f"{path}: credentials must come from a Secret")
        settings_used |= {e["name"] for e in c.get("env", []) if e["name"].startswith("GIFTD_")}
        grace = pod.get("terminationGracePeriodSeconds", 30)
        durations = {e["name"]: e.get("value", "") for e in c.get("env", [])}
        secs = sum(int(durations.get(k, d).rstrip("s")) for k, d in (("GIFTD_SHUTDOWN_DELAY", "0s"), ("GIFTD_SHUTDOWN_TIMEOUT", "15s")))
        check(grace > secs, f"{path}: terminationGracePeriodSeconds {grace} must exceed shutdown delay + timeout ({secs}s)")
    app = labels
    for kind in ("Service", "PodDisruptionBudget"):
        for p, d in kinds.get(kind, []):
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            check(all(app.get(k) == v for k, v in sel.items()), f"{p}: selector matches no giftd pod")
    for p, d in kinds.get("HorizontalPodAutoscaler", []):
        check(d["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], f"{p}: scales another Deployment")
for path, sec in kinds.get("Secret", []):
    for key in ("DATABASE_URL", "GIFTD_LINKV_APPS", "GIFTD_ADMIN_TOKEN"):
        check(key in sec.get("stringData", {}), f"{path}: lacks {key}")
for path, k in kinds.get("Kustomization", []):
    for r in k.get("resources", []):
        check(os.path.exists(os.path.join(os.path.dirname(path), r)), f"{path}: resource {r} does not exist")
    check("secret.example.yaml" not in k.get("resources", []), f"{path}: must not apply the Secret template")

# Grafana provisioning
for path in glob.glob("deploy/grafana/provisioning/*/*.yml"):
    for d in docs.get(path, []):
        check(d.get("apiVersion") == 1, f"{path}: apiVersion must be 1")

# Dockerfile
df = open("Dockerfile").read()
stages = re.findall(r"(?im)^FROM\s+\S+", df)
check(len(stages) >= 2, "Dockerfile: must be multi-stage")
check("CGO_ENABLED=0" in df, "Dockerfile: the binary must be static (CGO_ENABLED=0)")
check(re.search(r"(?im)^USER\s+(?!root\b|0\b)\S+", df), "Dockerfile: the final image must run as non-root")
gomod = re.search(r"(?m)^go (\d+\.\d+)", open("go.mod").read()).group(1)
img = re.search(r"(?im)^FROM\s+golang:(\d+\.\d+)", df)
check(img and img.group(1) == gomod, f"Dockerfile: build image must be golang:{gomod} as in go.mod")

for s in sorted(settings_used):
    check(f"`{s}`" in settings_doc, f"docs/configuration.md's settings table lacks `{s}`, which the deploy kit sets")

if problems:
    print("deploy kit problems:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"deploy kit: {len(files)} YAML files parsed; compose, Kubernetes, Grafana and Dockerfile checks passed")
