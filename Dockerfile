# Images of xbench, xattn's benchmark harness.
#
#   docker build -t xattn/xbench .                        OpenBLAS backend (target runtime, the default)
#   docker build --target static -t xattn/xbench:static .  pure Go, static, no C library at all
#   docker run --rm xattn/xbench -preset tiny
#
# Both build stages run the short tests of their build (cgo with OpenBLAS
# required, or CGO_ENABLED=0) before building; TEST_FLAGS='-run=^$' only
# compiles them. The base images are build arguments so that a machine without
# registry access can pass local ones (scripts/container-test.sh does).

ARG GO_IMAGE=golang:1.24-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG STATIC_IMAGE=gcr.io/distroless/static-debian12
ARG TEST_FLAGS=-short

# src: the Go image plus OpenBLAS's headers and pkg-config, the modules in a
# layer of their own (it changes only with go.mod and go.sum), then the source.
FROM ${GO_IMAGE} AS src
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas-dev pkg-config \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
ARG GOPROXY
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .

# build: cgo with OpenBLAS; XATTN_REQUIRE_OPENBLAS=1 fails the tests if a build
# tag slip left only the pure backend.
FROM src AS build
ARG TEST_FLAGS
RUN XATTN_REQUIRE_OPENBLAS=1 go test ${TEST_FLAGS} ./...
RUN go build -trimpath -ldflags='-s -w' -o /out/xbench ./cmd/xbench

# build-static: pure Go, no cgo, so the binary needs no C library.
FROM src AS build-static
ARG TEST_FLAGS
ENV CGO_ENABLED=0
RUN go test ${TEST_FLAGS} ./...
RUN go build -trimpath -ldflags='-s -w' -o /out/xbench ./cmd/xbench

# static: the pure-Go binary on a minimal base (distroless has no shell).
FROM ${STATIC_IMAGE} AS static
COPY --from=build-static /out/xbench /usr/local/bin/xbench
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/xbench"]

# runtime: slim Debian with only OpenBLAS's runtime library, the pthread
# variant that libopenblas-dev links against in the build stage. Last, so it is
# what a plain 'docker build' makes.
#
# OpenBLAS chooses its kernels on the machine the container runs on, not here.
# Bookworm's 0.3.21 does not know recent Xeons (family 6 model 207) and falls
# back to its SSE3 Prescott kernels there; xbench's header then warns and names
# the fix, such as 'docker run -e OPENBLAS_CORETYPE=SkylakeX …' on AVX-512 hosts
# ('Haswell' on AVX2 ones). The image sets no OPENBLAS_CORETYPE: a core the host
# lacks would be wrong. On AVX-512 hosts the layer's products run on xattn's
# own kernel whatever the core; the core matters for CPUs without AVX-512.
FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas0-pthread \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --uid 10001 --user-group --create-home --home-dir /home/xbench --shell /usr/sbin/nologin xbench
COPY --from=build /out/xbench /usr/local/bin/xbench
USER 10001:10001
WORKDIR /home/xbench
ENTRYPOINT ["/usr/local/bin/xbench"]
