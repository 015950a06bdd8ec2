# One image holding tickerq's three programs, worker, producer and
# quoteserver, as static binaries on PATH. It fixes no ENTRYPOINT: the
# command picks the program, e.g. `command: ["worker", "--shutdown-timeout",
# "30s"]` in docker-compose.yml, or `docker run IMAGE producer stats`.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Build with the image's Go, never a toolchain downloaded at build time.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# Modules in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
# No BuildKit-only syntax (cache mounts), so the classic builder that
# Compose v1 uses builds it too.
RUN go build -trimpath -ldflags="-s -w" -o /out/ ./worker ./producer ./quoteserver

# distroless/static: CA certificates, tzdata, /etc/passwd with the nonroot
# user (65532), and no shell or package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER nonroot:nonroot
# worker's admin server (ADMIN_ADDR), producer ui (UI_ADDR), quoteserver.
EXPOSE 8081 8080 8000
ENTRYPOINT []
CMD ["worker"]
