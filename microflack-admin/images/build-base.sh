#!/usr/bin/env bash
# Builds, with no container registry at all, the three base images the Containerfiles take as build
# arguments, so that MicroFlack's images can be built and run on a machine that reaches only Debian's
# mirror and the npm registry (CI, the tests). Operators build on the public images instead.
#
#   localhost/microflack-debian:bookworm        debootstrap --variant=minbase, imported with podman
#   localhost/microflack-node:<node version>    that + this host's Node.js, npm and Node's headers:
#                                               the build stage (npm ci) and the LB's base
#   localhost/microflack-node-runtime:<version> no distribution at all: Node.js, the libraries it is
#                                               linked against and /bin/sh (podman runs probes with
#                                               it): the services' base, about 95 MB
#
# Node.js is this host's: Debian 12 packages Node 18 and MicroFlack needs 20, and no other source
# of Node is reachable offline; the host's is the one the tests already run on. An image that exists
# is kept (delete it, or pass --rebuild); a new host Node version gets new tags.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--rebuild] [--print]
Builds the local base images that are missing (needs root, podman and debootstrap).
  --rebuild   build them again even if they exist
  --print     build nothing: print the image names as NAME=image lines
Prints DEBIAN_IMAGE=..., NODE_IMAGE=... and RUNTIME_IMAGE=... lines on standard output.
USAGE
}

rebuild=0 print=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --rebuild) rebuild=1 ;;
    --print) print=1 ;;
    *) echo "$(basename "$0"): unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

node_bin=$(command -v node)
node_version=$(node -p 'process.versions.node')
debian_image=localhost/microflack-debian:bookworm
node_image=localhost/microflack-node:$node_version
runtime_image=localhost/microflack-node-runtime:$node_version
mirror=${MF_DEBIAN_MIRROR:-http://deb.debian.org/debian}

print_names() {
  echo "DEBIAN_IMAGE=$debian_image"
  echo "NODE_IMAGE=$node_image"
  echo "RUNTIME_IMAGE=$runtime_image"
}
if [ "$print" -eq 1 ]; then
  print_names
  exit 0
fi

step() { printf '==> %s\n' "$*" >&2; }
die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, and podman's images are root's)"
command -v podman >/dev/null || die "podman is missing (microflack-admin/install/install-deps.sh)"
PATH="$PATH:/usr/sbin:/sbin" command -v debootstrap >/dev/null ||
  die "debootstrap is missing (microflack-admin/install/install-deps.sh)"

# One build at a time on this machine: two would debootstrap twice and race on the tags.
exec 9>/tmp/microflack-base-images.lock
flock 9

exists() { [ "$rebuild" -eq 0 ] && podman image exists "$1"; }

work=$(mktemp -d /var/tmp/microflack-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
labels=(--change "LABEL org.opencontainers.image.description=MicroFlack local base image (microflack-admin/images/build-base.sh)")
path_env="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Node's binary without its debug information (98 MB -> 86 MB), and with `libraries`, the libraries
# it and /bin/sh are linked against (for an image with no distribution: on Debian they are there, and
# /lib is a link that a copied lib/ folder would replace).
node_files() {
  local dest=$1 with=${2:-} lib
  mkdir -p "$dest/usr/local/bin"
  strip -o "$dest/usr/local/bin/node" "$node_bin" 2>/dev/null || cp "$node_bin" "$dest/usr/local/bin/node"
  chmod 755 "$dest/usr/local/bin/node"
  [ "$with" = libraries ] || return 0
  # ldd prints "name => /path (addr)" and the loader as "/lib64/ld-linux-x86-64.so.2 (addr)".
  while read -r lib; do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
  done < <(ldd "$node_bin" /bin/dash | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u)
}

if ! exists "$debian_image"; then
  step "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  started=$SECONDS
  PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase bookworm "$work/debian" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed"
  }
  rm -rf "$work/debian/var/cache/apt/archives/"*.deb "$work/debian/var/lib/apt/lists/"*
  # The build stages fetch npm packages through whatever TLS this host trusts (a proxy's CA too).
  mkdir -p "$work/debian/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$work/debian/etc/ssl/certs/ca-certificates.crt"
  tar -C "$work/debian" -c . | podman import -q "${labels[@]}" --change "$path_env" \
    --change 'CMD ["/bin/bash"]' - "$debian_image" >/dev/null
  rm -rf "$work/debian"
  step "$debian_image built in $((SECONDS - started)) s"
fi

if ! exists "$node_image"; then
  step "$node_image: $debian_image with this host's Node.js $node_version, npm and headers"
  started=$SECONDS
  root=$work/node
  mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include" "$root/usr/local/bin" "$root/etc"
  node_files "$root"
  npm_dir=$(npm root -g)/npm
  [ -d "$npm_dir" ] || die "npm is not at $npm_dir"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  # node-gyp builds native modules against these headers instead of downloading them.
  node_prefix=$(dirname "$(dirname "$node_bin")")
  [ -f "$node_prefix/include/node/node.h" ] || die "Node's headers are not in $node_prefix/include/node"
  cp -a "$node_prefix/include/node" "$root/usr/local/include/node"
  printf 'nodedir=/usr/local\nupdate-notifier=false\nfund=false\naudit=false\n' >"$root/etc/npmrc"
  mkdir -p "$root/usr/local/etc"
  cp "$root/etc/npmrc" "$root/usr/local/etc/npmrc"
  cat >"$work/Containerfile.node" <<'CONTAINERFILE'
ARG FROM
FROM ${FROM}
ARG NODE_VERSION
COPY node/ /
ENV NODE_VERSION=${NODE_VERSION} NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CONTAINERFILE
  podman build -q --pull=never --network=none -f "$work/Containerfile.node" \
    --build-arg "FROM=$debian_image" --build-arg "NODE_VERSION=$node_version" \
    -t "$node_image" "$work" >/dev/null
  rm -rf "$root"
  step "$node_image built in $((SECONDS - started)) s"
fi

if ! exists "$runtime_image"; then
  step "$runtime_image: Node.js $node_version and its libraries, from scratch"
  started=$SECONDS
  root=$work/runtime
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/app"
  node_files "$root" libraries
  # podman runs a probe as `/bin/sh -c ...`; Kubernetes needs no shell (httpGet probes).
  cp /bin/dash "$root/bin/sh"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnode:x:10001:10001:MicroFlack:/app:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnode:x:10001:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  tar -C "$root" --owner=0 --group=0 -c . | podman import -q "${labels[@]}" --change "$path_env" \
    --change "ENV NODE_VERSION=$node_version" --change "USER 10001:10001" \
    --change 'ENTRYPOINT ["/usr/local/bin/node"]' - "$runtime_image" >/dev/null
  rm -rf "$root"
  step "$runtime_image built in $((SECONDS - started)) s"
fi

print_names
