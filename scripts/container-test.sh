#!/bin/sh
# container-test.sh builds the Dockerfile's two images, runs them and checks
# them; CI runs it after the tests. Every check must pass:
#
#   - the runtime target (OpenBLAS) and the static target (pure Go) build,
#     and the tests in their build stages pass;
#   - each image runs xbench -preset tiny through its entrypoint and prints
#     the table, with the openblas backend and the pure one respectively;
#   - neither image holds a compiler (gcc, cc, go, ...), and both run as a
#     non-root user (the image's configured user, and id -u in the runtime
#     image);
#   - it reports both image sizes.
#
# With a working Docker engine (docker info succeeds) it uses it, with the
# official base images. Otherwise it needs no daemon and no registry: it uses
# buildah (installed with apt when missing, with debootstrap) with chroot
# isolation and its own storage, and makes the base images locally:
#
#   debian   debootstrap --variant=minbase bookworm, slimmed like
#            debian:bookworm-slim, from the host's Debian mirror
#   golang   that image plus gcc, libc6-dev, pkg-config, this machine's own
#            Go toolchain (go env GOROOT) and CA bundle, in place of
#            golang:1.24-bookworm
#   static   /etc/passwd, /etc/group and /tmp, in place of distroless/static
#
# and passes them as the Dockerfile's build arguments. The buildah path needs
# root (debootstrap, chroot); it runs itself through sudo otherwise.
#
# Environment:
#   XATTN_CT_ENGINE  docker or buildah (default: docker if docker info works)
#   XATTN_CT_CACHE   the buildah path's cache: the Debian root file system
#                    (rebuilt after 14 days), the base images and the build
#                    layers (default ${XDG_CACHE_HOME:-$HOME/.cache}/xattn-container-test);
#                    remove it to start clean
#   XATTN_CT_KEEP_GB the size above which the build layers of earlier runs
#                    are removed (default 10)
#   XATTN_CT_STORAGE buildah storage driver (default overlay where it works,
#                    else vfs)
#   DEBIAN_MIRROR    (default: the host's apt mirror, else deb.debian.org)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."

start=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(($(date +%s) - start)); }
die() {
	echo "container-test: $*" >&2
	exit 1
}

engine=${XATTN_CT_ENGINE:-}
if [ -z "$engine" ]; then
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		engine=docker
	else
		engine=buildah
	fi
fi
case $engine in
docker | buildah) ;;
*) die "XATTN_CT_ENGINE=$engine: want docker or buildah" ;;
esac

if [ "$engine" = buildah ] && [ "$(id -u)" -ne 0 ]; then
	exec sudo -E env "PATH=$PATH" sh "$here/container-test.sh" "$@"
fi

logs=$(mktemp -d)
ctrs=
cleanup() {
	if [ "$engine" = buildah ]; then
		for c in $ctrs; do
			bh rm "$c" >/dev/null 2>&1 || true
		done
	else
		for c in $ctrs; do
			docker rm -f "$c" >/dev/null 2>&1 || true
		done
	fi
	rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# logged NAME CMD...: runs CMD with its output in a log, printed in part if
# CMD fails.
logged() {
	log=$logs/$1.log
	shift
	if ! "$@" >"$log" 2>&1; then
		tail -n 80 "$log" >&2
		die "failed: $*"
	fi
}

# go_cmd finds the Go toolchain (setup.sh may have put it in /usr/local/go).
go_cmd() {
	if command -v go >/dev/null 2>&1; then
		go "$@"
	elif [ -x /usr/local/go/bin/go ]; then
		/usr/local/go/bin/go "$@"
	else
		die "no Go toolchain (run scripts/setup.sh)"
	fi
}
# The build stages use this machine's module proxy (empty: Go's default).
goproxy=${GOPROXY:-$( (go_cmd env GOPROXY) 2>/dev/null || true)}

# --- the engine's primitives -------------------------------------------------

if [ "$engine" = buildah ]; then
	cache=${XATTN_CT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xattn-container-test}
	mkdir -p "$cache"
	export BUILDAH_ISOLATION=chroot
	bh() { buildah --root "$cache/storage-$driver" --runroot "$cache/run-$driver" --storage-driver "$driver" "$@"; }
fi

# pick_driver sets driver: overlay where the kernel mounts it on the cache's
# file system (several times faster than vfs, which copies every layer
# whole), else vfs.
pick_driver() {
	driver=${XATTN_CT_STORAGE:-}
	[ -n "$driver" ] && return
	driver=overlay
	if p=$(bh from --quiet --name "xattn-ct-probe-$$" scratch 2>/dev/null); then
		bh mount "$p" >/dev/null 2>&1 || driver=
		bh rm "$p" >/dev/null 2>&1 || true
	else
		driver=
	fi
	if [ -z "$driver" ]; then
		rm -rf "$cache/storage-overlay" "$cache/run-overlay"
		driver=vfs
	fi
}

# new_ctr IMAGE sets ctr to a new container of IMAGE, removed on exit at the
# latest.
new_ctr() {
	if [ "$engine" = buildah ]; then
		ctr=$(bh from --pull=never --quiet --name "xattn-ct-$$-$(date +%s%N)" "$1")
	else
		ctr=$(docker create "$1")
	fi
	ctrs="$ctrs $ctr"
}

rm_ctr() {
	if [ "$engine" = buildah ]; then
		bh rm "$1" >/dev/null
	else
		docker rm -f "$1" >/dev/null
	fi
}

# run_entry IMAGE ARGS...: runs the image's entrypoint with ARGS.
run_entry() {
	img=$1
	shift
	if [ "$engine" = docker ]; then
		docker run --rm "$img" "$@"
		return
	fi
	ep=$(bh inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$img")
	[ -n "$ep" ] || die "$img has no entrypoint"
	new_ctr "$img"
	rc=0
	# shellcheck disable=SC2086 # the entrypoint's words
	bh run --isolation chroot "$ctr" -- $ep "$@" || rc=$?
	rm_ctr "$ctr"
	return $rc
}

# run_cmd IMAGE CMD...: runs CMD in the image instead of its entrypoint.
run_cmd() {
	img=$1
	shift
	if [ "$engine" = docker ]; then
		exe=$1
		shift
		docker run --rm --entrypoint "$exe" "$img" "$@"
		return
	fi
	new_ctr "$img"
	rc=0
	bh run --isolation chroot "$ctr" -- "$@" || rc=$?
	rm_ctr "$ctr"
	return $rc
}

# image_user IMAGE: the image's configured user.
image_user() {
	if [ "$engine" = docker ]; then
		docker image inspect --format '{{.Config.User}}' "$1"
	else
		bh inspect --type image --format '{{.OCIv1.Config.User}}' "$1"
	fi
}

# image_files IMAGE FILE writes the paths of every file and link in the image
# to FILE.
image_files() {
	new_ctr "$1"
	if [ "$engine" = docker ]; then
		docker export "$ctr" | tar -tf - | grep -v '/$' >"$2"
	else
		mnt=$(bh mount "$ctr")
		(cd "$mnt" && find . ! -type d) | sed 's|^\./||' >"$2"
		bh umount "$ctr" >/dev/null
	fi
	rm_ctr "$ctr"
}

# compilers FILE prints the compilers in a list of paths from image_files: C
# compiler drivers and their parts, assemblers, linkers and Go.
compilers() {
	grep -E '(^|/)s?bin/(cc|c\+\+|c89|c99|cpp|gcc|g\+\+|clang|clang\+\+|tcc|as|ld|go|gofmt|[a-z0-9_]+-linux-gnu-(gcc|g\+\+|cpp|as|ld))(-[0-9.]+)?$|(^|/)usr/(lib|libexec)/gcc/|(^|/)pkg/tool/' "$1" || true
}

# image_size IMAGE: the image's size, uncompressed.
image_size() {
	if [ "$engine" = docker ]; then
		b=$(docker image inspect --format '{{.Size}}' "$1")
		echo "$((b / 1000000)) MB"
	else
		bh images --noheading --format '{{.Size}}' "$1"
	fi
}

# --- local base images (buildah) ----------------------------------------------

# import_rootfs IMAGE DIR: commits the file tree DIR as IMAGE, with the
# configuration of Debian's images.
import_rootfs() {
	new_ctr scratch
	mnt=$(bh mount "$ctr")
	tar -C "$2" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
	bh umount "$ctr" >/dev/null
	bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
	bh commit --quiet --rm "$ctr" "$1" >/dev/null
}

# apt_mirror prints the host's Debian mirror, if it uses one.
apt_mirror() {
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n -e 's|^URIs: *\([^ ]*/debian\)/\{0,1\} *$|\1|p' \
			-e 's|^deb  *\(\[[^]]*\]  *\)\{0,1\}\([^ ]*/debian\)/\{0,1\}  *.*|\2|p' | head -n 1
}

# debian_base sets debian to localhost/xattn-ct/debian:bookworm-slim, made
# from a cached debootstrap tree.
debian_base() {
	img=localhost/xattn-ct/debian:bookworm-slim
	tree=$cache/debian-bookworm
	if [ -d "$tree" ] && [ -n "$(find "$tree" -maxdepth 0 -mtime +14)" ]; then
		echo "Debian tree older than 14 days: refreshing it"
		rm -rf "$tree"
		bh rmi --force "$img" >/dev/null 2>&1 || true
	fi
	if [ ! -d "$tree" ]; then
		mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
		mirror=${mirror:-http://deb.debian.org/debian}
		echo "debootstrap --variant=minbase bookworm from $mirror"
		rm -rf "$tree.tmp"
		logged debootstrap debootstrap --variant=minbase bookworm "$tree.tmp" "$mirror"
		slim_tree "$tree.tmp" "$mirror"
		mv "$tree.tmp" "$tree"
		bh rmi --force "$img" >/dev/null 2>&1 || true
	fi
	if ! bh inspect --type image "$img" >/dev/null 2>&1; then
		import_rootfs "$img" "$tree"
	fi
	debian=$img
}

# slim_tree DIR MIRROR does to a debootstrap tree what debuerreotype does for
# debian:bookworm-slim: no docs, man pages or locales, apt cleaning up after
# itself, the same apt sources; and no host files.
slim_tree() {
	t=$1
	cat >"$t/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/lintian/overrides/*
		path-exclude /usr/share/locale/*
		path-exclude /usr/share/man/*
	EOF
	cat >"$t/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	echo 'Acquire::Languages "none";' >"$t/etc/apt/apt.conf.d/docker-no-languages"
	rm -f "$t/etc/apt/sources.list"
	cat >"$t/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $2
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	find "$t/usr/share/doc" ! -type d ! -name copyright -delete
	for d in groff info linda lintian/overrides locale man; do
		[ -d "$t/usr/share/$d" ] && find "$t/usr/share/$d" -mindepth 1 -delete
	done
	rm -rf "${t:?}"/var/cache/apt/*.bin "${t:?}"/var/cache/apt/archives/*.deb "${t:?}"/var/lib/apt/lists/* "${t:?}"/dev/* "${t:?}"/tmp/*
	: >"$t/etc/resolv.conf"
	: >"$t/etc/hostname"
	[ -f "$t/etc/machine-id" ] && : >"$t/etc/machine-id"
	return 0
}

# golang_base sets golang to localhost/xattn-ct/golang:GOVERSION: the Debian
# base with a C toolchain and this machine's Go, set up like the official Go
# image.
golang_base() {
	gover=$(go_cmd env GOVERSION)
	img=localhost/xattn-ct/golang:$gover
	if ! bh inspect --type image "$img" >/dev/null 2>&1; then
		new_ctr "$debian"
		c=$ctr
		logged golang-apt bh run --isolation chroot "$c" -- sh -c \
			'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config && rm -rf /var/lib/apt/lists/* && mkdir -p /go/bin /go/src'
		mnt=$(bh mount "$c")
		mkdir -p "$mnt/usr/local/go"
		cp -a "$(go_cmd env GOROOT)/." "$mnt/usr/local/go/"
		# This machine's CA bundle, for a network behind a TLS-inspecting
		# proxy (Debian's bundle plus that proxy's CA).
		cas=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
		[ -f "$cas" ] && cp "$cas" "$mnt/etc/ssl/certs/ca-certificates.crt"
		bh umount "$c" >/dev/null
		bh config --env GOLANG_VERSION="${gover#go}" --env GOTOOLCHAIN=local --env GOPATH=/go \
			--env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			--workingdir /go "$c"
		bh commit --quiet --rm "$c" "$img" >/dev/null
		# Stand-ins for other Go versions.
		bh images --noheading --format '{{.Name}}:{{.Tag}}' | grep '^localhost/xattn-ct/golang:' |
			grep -v ":$gover\$" | while read -r old; do bh rmi "$old" >/dev/null; done || true
	fi
	golang=$img
}

# static_base sets static to localhost/xattn-ct/static: what a static binary may need
# of distroless/static (users, groups, /tmp), and nothing else.
static_base() {
	img=localhost/xattn-ct/static:latest
	if ! bh inspect --type image "$img" >/dev/null 2>&1; then
		t=$logs/static
		mkdir -p "$t/etc" "$t/tmp" "$t/home/nonroot"
		chmod 1777 "$t/tmp"
		chown 65532:65532 "$t/home/nonroot"
		printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
			'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
			'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$t/etc/passwd"
		printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$t/etc/group"
		import_rootfs "$img" "$t"
	fi
	static=$img
}

# --- the run -----------------------------------------------------------------

step "engine: $engine"
set --
if [ "$engine" = buildah ]; then
	need=
	command -v buildah >/dev/null 2>&1 || need="$need buildah"
	command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
	[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need="$need debian-archive-keyring"
	if [ -n "$need" ]; then
		echo "apt-get install$need"
		apt-get update -qq
		# shellcheck disable=SC2086 # a list of packages
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
	fi
	pick_driver
	echo "buildah $(buildah version | sed -n 's/^Version: *//p'), storage $cache/storage-$driver"
	# Containers left by an interrupted run; and the build layers of earlier
	# runs, all at once, when they fill more than XATTN_CT_KEEP_GB (default
	# 10): the base images stay.
	bh containers --noheading --format '{{.ContainerName}}' 2>/dev/null | grep '^xattn-ct-' |
		while read -r c; do bh rm "$c" >/dev/null; done || true
	used=$(du -sk "$cache/storage-$driver" 2>/dev/null | cut -f1)
	if [ "${used:-0}" -gt $((${XATTN_CT_KEEP_GB:-10} * 1024 * 1024)) ]; then
		echo "storage above ${XATTN_CT_KEEP_GB:-10} GB: removing the build layers of earlier runs"
		bh rmi --prune >/dev/null
	fi

	step "base images"
	debian_base
	golang_base
	static_base
	echo "$debian, $golang, $static"
	set -- --build-arg "GO_IMAGE=$golang" --build-arg "RUNTIME_IMAGE=$debian" --build-arg "STATIC_IMAGE=$static"

	# The compiler check must see the compilers where there are some.
	image_files "$golang" "$logs/files"
	n=$(compilers "$logs/files" | grep -c -E '^usr/local/go/bin/go$|^usr/bin/gcc$') || true
	[ "$n" = 2 ] || die "the compiler check misses gcc or go in $golang"
fi

build() { # TARGET IMAGE BUILD-ARGS...
	target=$1 tag=$2
	shift 2
	if [ "$engine" = docker ]; then
		logged "build-$target" docker build --build-arg "GOPROXY=$goproxy" --target "$target" -t "$tag" .
	else
		logged "build-$target" bh bud --isolation chroot --layers --pull=never "$@" \
			--build-arg "GOPROXY=$goproxy" --target "$target" -t "$tag" .
	fi
	grep -E '^(ok|FAIL|---|panic)' "$logs/build-$target.log" || true
}

img_blas=localhost/xattn-ct/xbench:openblas
img_static=localhost/xattn-ct/xbench:static
[ "$engine" = docker ] && img_blas=xattn-ct/xbench:openblas && img_static=xattn-ct/xbench:static

step "build the runtime target (OpenBLAS) as $img_blas"
build runtime "$img_blas" "$@"
step "build the static target (pure Go) as $img_static"
build static "$img_static" "$@"

check() { # IMAGE BACKEND
	step "$1: xbench -preset tiny"
	run_entry "$1" -preset tiny >"$logs/run.log" 2>&1 || {
		cat "$logs/run.log" >&2
		die "$1: xbench failed"
	}
	cat "$logs/run.log"
	grep -Eq "^ *tiny +$2 +[0-9]" "$logs/run.log" || die "$1: no table row for tiny with the $2 backend"

	step "$1: no compiler, non-root"
	image_files "$1" "$logs/files"
	found=$(compilers "$logs/files")
	[ -z "$found" ] || die "$1 holds a compiler: $(echo "$found" | head -n 5)"
	echo "no compiler in the image"
	u=$(image_user "$1")
	case ${u%%:*} in
	"" | 0 | root) die "$1 runs as root (user '$u')" ;;
	esac
	echo "configured user: $u"
}

check "$img_blas" openblas
uid=$(run_cmd "$img_blas" id -u)
[ "$uid" != 0 ] || die "$img_blas: id -u is 0"
echo "id -u in the image: $uid"
check "$img_static" pure

step "image sizes"
echo "$img_blas: $(image_size "$img_blas")"
echo "$img_static: $(image_size "$img_static")"

step "all container checks passed"
