# syntax=docker/dockerfile:1
# The recordsync image: one static binary on distroless, run as a non-root
# user. Build it with `make image` (which passes VERSION and COMMIT, as the
# build context has no .git), or:
#   docker build --build-arg VERSION=v1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) -t recordsync .
# Every subcommand runs from it: `docker run --rm recordsync version`,
# `... recordsync pusher --nats-url nats://nats:4222`.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a change of the code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=unknown
# The same build as `make build`: CGO_ENABLED=0, -trimpath, the version and
# commit in the binary.
RUN make build BIN=/out VERSION="${VERSION}" COMMIT="${COMMIT}" \
 && /out/recordsync version \
 && mkdir -p /out/data

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="record-sync" \
      org.opencontainers.image.description="Keeps Salesforce, HubSpot and Outreach in step with System A's records, over NATS JetStream" \
      org.opencontainers.image.source="https://github.com/recordsync/record-sync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.licenses="UNLICENSED"
COPY --from=build /out/recordsync /usr/local/bin/recordsync
# The data directory (the emulator's records, dev's store): writable by the
# user, and a volume in compose and in the chart.
COPY --from=build --chown=65532:65532 /out/data /data
ENV RECORDSYNC_DATA_DIR=/data \
    RECORDSYNC_HTTP_ADDR=0.0.0.0:8080
WORKDIR /data
USER 65532:65532
# 8080: the HTTP edge (and /metrics of ingest); 8090: the CRM emulator;
# 9090: /metrics of rules, pusher and status (RECORDSYNC_METRICS_ADDR).
EXPOSE 8080 8090 9090
ENTRYPOINT ["/usr/local/bin/recordsync"]
CMD ["help"]
