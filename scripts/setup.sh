#!/bin/sh
# setup.sh installs what xattn needs on Debian or Ubuntu: the OpenBLAS headers
# and library, pkg-config and a C compiler for cgo, and a Go toolchain ≥ 1.24
# if the machine has none. It is idempotent and is what .ci/run and the
# README use.
set -eu

GO_MIN=24                 # minor version: Go 1.24 or later
GO_FETCH=1.24.11          # the toolchain fetched when none is found

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi

need=
for p in libopenblas-dev pkg-config gcc libc6-dev ca-certificates curl unzip; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	echo "setup: apt-get install$need"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	v=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
	[ -n "$v" ] && [ "$v" -ge "$GO_MIN" ]
}

if ! go_ok; then
	[ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! go_ok; then
	# Debian and Ubuntu LTS ship older Go; the Go module proxy serves the
	# official toolchains as modules (this is how 'go' itself upgrades).
	arch=$(dpkg --print-architecture)
	proxy=$(printf '%s' "${GOPROXY:-https://proxy.golang.org}" | cut -d, -f1)
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_FETCH.linux-$arch.zip"
	echo "setup: fetching Go $GO_FETCH from $proxy"
	tmp=$(mktemp -d)
	curl -fsSL "$url" -o "$tmp/go.zip"
	unzip -q "$tmp/go.zip" -d "$tmp"
	$SUDO rm -rf /usr/local/go
	$SUDO mv "$tmp/golang.org/toolchain@v0.0.1-go$GO_FETCH.linux-$arch" /usr/local/go
	$SUDO chmod -R a+rX /usr/local/go
	$SUDO chmod a+x /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*
	$SUDO ln -sf /usr/local/go/bin/go /usr/local/go/bin/gofmt /usr/local/bin/
	rm -rf "$tmp"
fi
go_ok || { echo "setup: no Go ≥ 1.$GO_MIN after install" >&2; exit 1; }

cd "$(dirname "$0")/.."
go mod download
echo "setup: $(go version), OpenBLAS $(pkg-config --modversion openblas)"
