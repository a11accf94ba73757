#!/bin/sh
# Install the Debian/Ubuntu packages that building the operator image without docker
# (tools/image.py: podman or buildah, mmdebstrap for a local base, skopeo/umoci) and a real
# kubelet node (containerd, runc, CNI plugins, iptables, iproute2) need.
#
#     sudo tools/system-packages.sh      # or as root; a no-op when all are installed
#
# Runs `apt-get update` once, then installs only the missing ones, without recommends.
set -eu

PACKAGES="buildah podman mmdebstrap containerd runc containernetworking-plugins skopeo umoci uidmap fuse-overlayfs iptables iproute2"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: not a Debian/Ubuntu system (no dpkg/apt-get); install by hand: $PACKAGES" >&2
    exit 1
fi

missing=""
for package in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $package"
done

if [ -z "$missing" ]; then
    echo "system-packages: already installed: $PACKAGES"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "system-packages: missing:$missing; run this script as root (no sudo here)" >&2
    exit 1
fi

echo "system-packages: installing:$missing"
echo "+ ${sudo:+$sudo }apt-get update"
$sudo apt-get update
echo "+ ${sudo:+$sudo }apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086  # one word per package
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
echo "system-packages: done"
