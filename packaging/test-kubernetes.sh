#!/usr/bin/env bash
# Validates packaging/kubernetes/ offline (no cluster): each manifest against the Kubernetes
# schemas (kubernetes-validate --strict), their style (yamllint), and the ConfigMap's
# fulcrum.toml with `fulcrum check` (its token path pointed at a scratch token).
# Needs: pip install kubernetes-validate yamllint; a built fulcrum (FULCRUM, default
# target/release/fulcrum).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FULCRUM=${FULCRUM:-target/release/fulcrum}

yamllint -s -c packaging/kubernetes/.yamllint.yaml packaging/kubernetes/
kubernetes-validate --strict packaging/kubernetes/{configmap,deployment,service,pdb}.yaml

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 - packaging/kubernetes/configmap.yaml "$scratch" <<'PY'
import sys, yaml
configmap, scratch = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(configmap)) if d]
text = docs[0]["data"]["fulcrum.toml"]
open(f"{scratch}/token", "w").write("scratch-token\n")
text = text.replace("/etc/fulcrum-token/token", f"{scratch}/token")
open(f"{scratch}/fulcrum.toml", "w").write(text)
PY
"$FULCRUM" check -c "$scratch/fulcrum.toml"
echo "kubernetes manifests: ok"
