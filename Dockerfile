# giftd's image: a static binary on distroless (CA certificates, tzdata, a
# nonroot user and nothing else: no shell, no package manager).
#   docker build -t giftd .
#   docker run --rm -e DATABASE_URL=… -e GIFTD_LINKV_APPS=… -e GIFTD_ADMIN_TOKEN=… giftd
# The Go version must satisfy go.mod's go line.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), reproducible paths; the VCS revision is stamped when .git
# is in the build context (giftd_build_info shows it).
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o /out/giftd ./cmd/giftd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/giftd /giftd
USER nonroot:nonroot
# Public listener (debit callback, probes) and admin listener (admin API,
# /metrics, probes). In a container the admin listener must bind beyond
# loopback for Prometheus to reach it: keep its port off the internet.
ENV GIFTD_HTTP_ADDR=:8080 GIFTD_ADMIN_ADDR=:8081
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/giftd", "healthcheck"]
ENTRYPOINT ["/giftd"]
CMD ["serve"]
