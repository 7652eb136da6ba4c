# The EPP image: `make image IMAGE=<registry>/openepp:<tag>`, then
# `cd manifests && kustomize edit set image openepp/epp=<registry>/openepp:<tag>`.
# A static binary on distroless, run as the UID/GID the Deployment sets
# (test/manifests checks that they agree).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change reuses the downloaded module layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The checkout's .git (when present) stamps the commit into
# inference_extension_info, as `make build` does.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto -o /out/epp ./cmd/epp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/epp /epp
USER 65532:65532
# ext_proc, gRPC health, metrics (see --grpc-port, --grpc-health-port, --metrics-port).
EXPOSE 9002 9003 9090
ENTRYPOINT ["/epp"]
