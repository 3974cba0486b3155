#!/bin/sh
# Installs what phxd needs to build and test on Debian 12 (bookworm).
# Runs as root, or through sudo when not root.  Quiet when all is there.
# FUZZ=1 adds what the libFuzzer build needs (clang, libclang-rt-14-dev).
# BENCH=1 adds what bench/run needs: valgrind (instruction counts), and
# Node.js and npm (the phoenix.js baseline) unless node and npm are there.
# PROMTOOL=1 adds prometheus for promtool, which tests/it_ctl then checks the
# METRICS text with, on top of its own line-by-line check (CI sets it; it is
# left out by default: a test run should not install a Prometheus server).  Its
# recommends (node exporter) are not installed, and where systemd runs, the
# Prometheus server the package enables is stopped and disabled again.
set -eu

PKGS="gcc make autoconf automake pkg-config libc6-dev \
libev-dev libwslay-dev libjson-c-dev libssl-dev libsystemd-dev zlib1g-dev check \
socat openssl ca-certificates systemd"
[ "${PROMTOOL:-0}" = 1 ] && PKGS="$PKGS prometheus"
[ "${FUZZ:-0}" = 1 ] && PKGS="$PKGS clang libclang-rt-14-dev"
if [ "${BENCH:-0}" = 1 ]; then
	PKGS="$PKGS valgrind"
	command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
	command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
fi

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
case " $missing " in
*" prometheus "*)
	if [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || :
	fi
	;;
esac
