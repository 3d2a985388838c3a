#!/bin/sh
# peers-setup.sh installs the optional peers of xbench (go run ./cmd/xbench
# -peers torch,ort) on Debian or Ubuntu:
#
#   torch  Debian's python3-torch and python3-numpy, run by /usr/bin/python3
#          (scripts/peer_torch.py); it also exports the ONNX graph for ort.
#   ort    onnxruntime-node from npm, with its bundled CPU library, installed
#          into scripts/peer/node_modules (git-ignored) and run by Node
#          (scripts/peer_ort.js). ONNXRUNTIME_NODE_INSTALL=skip stops its
#          install script from fetching the CUDA build, which is not used.
#
# It is idempotent and quiet: it installs only what is missing. Nothing else
# in the project needs the peers: CI does not run them, and xbench reports a
# missing peer as absent.
set -eu
cd "$(dirname "$0")"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi

# Install a package only when what it provides is missing: Node and npm may
# come from another source than Debian's packages (NodeSource's nodejs
# bundles npm and conflicts with Debian's npm).
need=
/usr/bin/python3 -c 'import torch' 2>/dev/null || need="$need python3-torch"
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need="$need python3-numpy"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
if [ -n "$need" ]; then
	echo "peers-setup: apt-get install$need"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

want=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' peer/package.json)
have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' peer/node_modules/onnxruntime-node/package.json 2>/dev/null | head -n 1)
if [ "$have" != "$want" ]; then
	echo "peers-setup: npm install onnxruntime-node@$want into scripts/peer"
	(cd peer && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
fi

/usr/bin/python3 peer_torch.py probe >/dev/null || { echo "peers-setup: torch peer does not start" >&2; exit 1; }
node peer_ort.js probe >/dev/null || { echo "peers-setup: ort peer does not start" >&2; exit 1; }
