#!/bin/sh
# Installs what phxd needs to build and test on Debian 12 (bookworm).
# Runs as root, or through sudo when not root.  Quiet when all is there.
set -eu

PKGS="gcc make autoconf automake pkg-config libc6-dev \
libev-dev libwslay-dev libjson-c-dev libssl-dev libsystemd-dev zlib1g-dev check \
socat openssl ca-certificates systemd"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps.sh: need root or sudo to install:$missing" >&2
	exit 1
fi
echo "deps.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
