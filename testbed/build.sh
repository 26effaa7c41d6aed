#!/usr/bin/env bash
# Builds the testbed binaries from Go modules and caches them by version.
# Running it again with the same pins does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${RECONCILER_CACHE:-$HOME/.cache/reconciler-testbed}
mkdir -p "$cache"

log() { printf 'testbed: %s\n' "$*" >&2; }

# build NAME VERSION MAIN_PACKAGE LDFLAGS [require...] [-- replace...]
# A throwaway module pins the requirement so `go build` works even where the
# upstream module has replace directives that `go install pkg@v` refuses.
build() {
  local name=$1 version=$2 pkg=$3 ldflags=$4
  shift 4
  local out="$cache/$name-$version/$name"
  if [ -x "$out" ]; then return 0; fi
  local work
  work=$(mktemp -d)
  log "building $name $version (once; cached in $cache)"
  local start=$SECONDS
  (
    cd "$work"
    go mod init "testbed.local/$name" >/dev/null 2>&1
    if [ -n "${MAIN_GO:-}" ]; then printf '%s\n' "$MAIN_GO" > main.go; fi
    for edit in "$@"; do go mod edit "$edit"; done
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod download
    mkdir -p "$(dirname "$out")"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg"
    mv "$out.tmp" "$out"
  )
  rm -rf "$work"
  log "built $name $version in $((SECONDS - start))s"
}

# The replaces and -ldflags every build from k8s.io/kubernetes needs: each staging module
# k8s.io/<name> => its v0.<minor>.<patch> release, and the version stamp without which the
# binaries report v0.0.0 (and charts with a kubeVersion constraint fail).
kube_settings() {
  local v=$KUBERNETES_VERSION minor
  minor=${v#v1.}; minor=${minor%%.*}
  KUBE_STAGING_VERSION="v0.${v#v1.}"
  local gomod
  gomod=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  KUBE_EDITS=("-require=k8s.io/kubernetes@$v")
  local mod
  for mod in $(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}'); do
    KUBE_EDITS+=("-replace=$mod=$mod@$KUBE_STAGING_VERSION")
  done
  local pkgbase=k8s.io/component-base/version
  KUBE_LDFLAGS="-s -w -X $pkgbase.gitVersion=$v -X $pkgbase.gitMajor=1 -X $pkgbase.gitMinor=$minor -X $pkgbase.gitTreeState=clean -X $pkgbase.buildDate=1970-01-01T00:00:00Z"
}

# kube_component NAME: kube-apiserver, kube-controller-manager or kube-scheduler from the
# pinned k8s.io/kubernetes module (each has a cmd/NAME/app package to keep the requirement).
kube_component() {
  local name=$1
  kube_settings
  MAIN_GO="package main

import _ \"k8s.io/kubernetes/cmd/$name/app\"

func main() {}" build "$name" "$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/$name" "$KUBE_LDFLAGS" "${KUBE_EDITS[@]}"
}

# kubectl's main lives in k8s.io/kubernetes/cmd/kubectl, a program no module can import;
# the same few lines over the k8s.io/kubectl release of the pinned version need far less
# of the kubernetes tree.
build_kubectl() {
  kube_settings
  MAIN_GO='package main

import (
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}' build kubectl "$KUBERNETES_VERSION" . "$KUBE_LDFLAGS" "-require=k8s.io/kubectl@$KUBE_STAGING_VERSION"
}

# kwok has no replace directives, so a plain `go install module@version` builds it.
build_kwok() {
  local out="$cache/kwok-$KWOK_VERSION/kwok"
  if [ -x "$out" ]; then return 0; fi
  log "building kwok $KWOK_VERSION (once; cached in $cache)"
  local start=$SECONDS work
  work=$(mktemp -d)
  # GOFLAGS cleared: `go install module@version` refuses -mod settings.
  (cd "$work" && CGO_ENABLED=0 GOBIN="$work/bin" GOFLAGS='' \
    go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mkdir -p "$(dirname "$out")"
  mv "$work/bin/kwok" "$out"
  rm -rf "$work"
  log "built kwok $KWOK_VERSION in $((SECONDS - start))s"
}

etcd() {
  MAIN_GO='package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }' build etcd "$ETCD_VERSION" . "-s -w" "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION"
}

helm_bin() {
  local name=$1 major=$2 v=$3
  MAIN_GO="package main

import _ \"helm.sh/helm/$major/cmd/helm\"

func main() {}" build "$name" "$v" "helm.sh/helm/$major/cmd/helm" "-s -w -X helm.sh/helm/$major/internal/version.version=$v" "-require=helm.sh/helm/$major@$v"
}

registry() {
  MAIN_GO='package main

import _ "github.com/distribution/distribution/v3/cmd/registry"

func main() {}' build registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry "-s -w" "-require=github.com/distribution/distribution/v3@$DISTRIBUTION_VERSION"
}

# The benchmarks' peer, not a testbed part: `make bench` builds it on demand, so the
# cold build of `make test` does not grow. Its go.mod carries replace directives
# (which `go install helmfile@v` refuses); the throwaway module repeats them.
helmfile() {
  local v=$HELMFILE_VERSION gomod
  gomod=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/helmfile/helmfile@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local edits=("-require=github.com/helmfile/helmfile@$v")
  local line
  while read -r line; do
    [ -n "$line" ] && edits+=("-replace=$line")
  done < <(python3 - "$gomod" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^replace \((.*?)^\)", text, re.S | re.M)
lines = [l for b in blocks for l in b.splitlines()] + re.findall(r"^replace (\S.*)$", text, re.M)
for line in lines:
    line = line.split("//")[0].strip()
    m = re.match(r"(\S+)(?: \S+)? => (\S+) (\S+)$", line)
    if m:
        print(f"{m[1]}={m[2]}@{m[3]}")
PY
)
  MAIN_GO='package main

import _ "github.com/helmfile/helmfile/cmd"

func main() {}' build helmfile "$v" github.com/helmfile/helmfile "-s -w -X go.szostok.io/version.version=$v" "${edits[@]}"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(etcd helm4 helm3 registry kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)
for t in "${targets[@]}"; do
  case $t in
    etcd) etcd ;;
    helm4) helm_bin helm4 v4 "$HELM4_VERSION" ;;
    helm3) helm_bin helm3 v3 "$HELM3_VERSION" ;;
    registry) registry ;;
    kube-apiserver | kube-controller-manager | kube-scheduler) kube_component "$t" ;;
    kwok) build_kwok ;;
    kubectl) build_kubectl ;;
    helmfile) helmfile ;;
    *) log "unknown target $t"; exit 2 ;;
  esac
done
# One line a binary, read by the test fixtures and `make testbed`. Lines of other keys
# (written by another checkout sharing this cache) are kept.
cat > "$cache/paths.env.tmp" <<PATHS
ETCD=$cache/etcd-$ETCD_VERSION/etcd
KUBE_APISERVER=$cache/kube-apiserver-$KUBERNETES_VERSION/kube-apiserver
HELM4=$cache/helm4-$HELM4_VERSION/helm4
HELM3=$cache/helm3-$HELM3_VERSION/helm3
REGISTRY=$cache/registry-$DISTRIBUTION_VERSION/registry
KUBE_CONTROLLER_MANAGER=$cache/kube-controller-manager-$KUBERNETES_VERSION/kube-controller-manager
KUBE_SCHEDULER=$cache/kube-scheduler-$KUBERNETES_VERSION/kube-scheduler
KWOK=$cache/kwok-$KWOK_VERSION/kwok
KUBECTL=$cache/kubectl-$KUBERNETES_VERSION/kubectl
PATHS
if [ -f "$cache/paths.env" ]; then
  keys=$(cut -d= -f1 "$cache/paths.env.tmp" | paste -sd'|')
  grep -vE "^($keys)=" "$cache/paths.env" >> "$cache/paths.env.tmp" || true
fi
mv "$cache/paths.env.tmp" "$cache/paths.env"
