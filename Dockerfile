# syntax=docker/dockerfile:1
#
# Images of flink-suite: one per component plus the all-in-one `flink-suite`, built from
# one cached build stage. From the repository root:
#
#   docker build --target job-manager -t <registry>/flink-suite/job-manager:0.1.0 .
#   (targets: job-manager, metrics-gateway, dingtalk-alert, log-shipper, flink-suite)
#
# or deploy/build-images.sh REGISTRY TAG for all five (deploy/README.md). Needs a Docker
# engine with BuildKit; the project's CI machine has none, so images are built elsewhere.
#
# The runtime images run as the unprivileged user 65532, write nothing outside their data
# and config volumes (readOnlyRootFilesystem works), and start the binary as PID 1 so that
# SIGTERM drains and SIGHUP (`kill -1 1`, procps is included for it) reloads.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p job-manager -p metrics-gateway -p dingtalk-alert -p log-shipper -p suite \
    && mkdir -p /out \
    && for bin in job-manager metrics-gateway dingtalk-alert log-shipper flink-suite; do \
         cp "target/release/$bin" /out/ && strip "/out/$bin"; \
       done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata procps \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 flink-suite \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin flink-suite \
    && mkdir -p /data && chown 65532:65532 /data
WORKDIR /data
USER 65532:65532

FROM runtime AS job-manager
COPY --from=build /out/job-manager /usr/local/bin/job-manager
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/job-manager"]
CMD ["--data-dir=/data"]

FROM runtime AS metrics-gateway
COPY --from=build /out/metrics-gateway /usr/local/bin/metrics-gateway
EXPOSE 9091
ENTRYPOINT ["/usr/local/bin/metrics-gateway"]

FROM runtime AS dingtalk-alert
COPY --from=build /out/dingtalk-alert /usr/local/bin/dingtalk-alert
EXPOSE 8060
ENTRYPOINT ["/usr/local/bin/dingtalk-alert"]

FROM runtime AS log-shipper
COPY --from=build /out/log-shipper /usr/local/bin/log-shipper
EXPOSE 8686
ENTRYPOINT ["/usr/local/bin/log-shipper"]
CMD ["--data-dir=/data"]

# The default target: all four components in one process, plus each binary on its own.
FROM runtime AS flink-suite
COPY --from=build /out/ /usr/local/bin/
EXPOSE 8080 9091 8060 8686
ENTRYPOINT ["/usr/local/bin/flink-suite"]
CMD ["--data-dir=/data"]
