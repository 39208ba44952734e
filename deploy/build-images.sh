#!/usr/bin/env bash
# Builds and pushes the five images of the Dockerfile at the repository root.
#
#   deploy/build-images.sh registry.cn-hangzhou.aliyuncs.com/<acr-namespace> 0.1.0 [--push]
#
# Needs Docker with BuildKit (Docker 23+ by default) and, for --push, `docker login` to the
# registry first. The build stage is shared: the first target compiles, the others reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: $0 REGISTRY/NAMESPACE TAG [--push]" >&2
  exit 2
fi
repo=$1 tag=$2 push=${3:-}
for target in job-manager metrics-gateway dingtalk-alert log-shipper flink-suite; do
  image="$repo/$target:$tag"
  echo "== $image"
  DOCKER_BUILDKIT=1 docker build --target "$target" -t "$image" .
  if [ "$push" = "--push" ]; then
    docker push "$image"
  fi
done
