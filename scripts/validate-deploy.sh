#!/usr/bin/env bash
# Checks deploy/ without a cluster or a Docker engine:
# * deploy/fleet-job.yaml against the Kubernetes OpenAPI schemas bundled in
#   the PyPI package kubernetes-validate (strict: unknown fields fail), for
#   the Kubernetes versions in K8S_VERSIONS;
# (kubectl's `--dry-run=client` is not used: it still asks an API server for
# its resource list, and there is none here.)
# * the Job's shard count appears consistently (completions, parallelism,
#   --shards) and its metrics port is named `metrics`.
# Not checked here: deploy/podmonitor.yaml (a Prometheus Operator CRD, no
# bundled schema), `docker build` (no engine), the pods' behaviour in a cluster.
# Not part of CI: install its tool with `pip install kubernetes-validate`.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.33.0}"

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "validate-deploy: needs kubernetes-validate (pip install kubernetes-validate)" >&2
  exit 1
fi
for v in $K8S_VERSIONS; do
  kubernetes-validate --strict --kubernetes-version "$v" deploy/fleet-job.yaml
done
python3 - <<'PY'
import sys, yaml
job = yaml.safe_load(open("deploy/fleet-job.yaml"))
spec = job["spec"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
args = c["args"]
shards = int(args[args.index("--shards") + 1])
problems = []
if spec.get("completionMode") != "Indexed":
    problems.append("completionMode is not Indexed")
if not (spec["completions"] == spec["parallelism"] == shards):
    problems.append(f"completions {spec['completions']}, parallelism {spec['parallelism']}, --shards {shards} differ")
if not any(p.get("name") == "metrics" for p in c.get("ports", [])):
    problems.append("no container port named metrics")
port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
if args[args.index("--metrics-listen") + 1] != f"0.0.0.0:{port}":
    problems.append("--metrics-listen does not match the metrics port")
if not any(v.get("secret") for v in pod.get("volumes", [])):
    problems.append("tokens are not from a Secret")
if problems:
    sys.exit("validate-deploy: " + "; ".join(problems))
print(f"validate-deploy: Indexed Job of {shards} shards, metrics port {port}, tokens from a Secret: consistent")
PY
