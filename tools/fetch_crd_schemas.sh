#!/usr/bin/env bash
# Fetches the prometheus-operator CRD schemas that tests/unit/deploy/test_k8s.py
# validates the monitoring objects (PodMonitor, ServiceMonitor, PrometheusRule)
# against, offline: the npm package @kubernetes-models/prometheus-operator 4.0.0
# carries each CRD's openAPIV3Schema as data (its later releases ship compiled
# validators only). Unpacked into tools/.cache/crd-schemas/ (git-ignored).
#
#   bash tools/fetch_crd_schemas.sh
set -euo pipefail
cd "$(dirname "$0")"
PACKAGE=@kubernetes-models/prometheus-operator
VERSION=4.0.0
DEST=.cache/crd-schemas
if [ -f "$DEST/prometheus-operator-$VERSION/package.json" ]; then
  exit 0
fi
mkdir -p "$DEST"
tarball=$(cd "$DEST" && npm pack --silent "$PACKAGE@$VERSION" | tail -n 1)
rm -rf "$DEST/prometheus-operator-$VERSION"
mkdir -p "$DEST/prometheus-operator-$VERSION"
tar -xzf "$DEST/$tarball" -C "$DEST/prometheus-operator-$VERSION" --strip-components=1
rm -f "$DEST/$tarball"
echo "tools/$DEST/prometheus-operator-$VERSION"
