# Shared by test.sh, start.sh and .ci/run (sourced, not run): install the
# Debian packages that are missing, then configure and build.

# What building and testing kvshard needs on Debian 12.
KVS_BUILD_PACKAGES="gcc libc6-dev pkg-config meson ninja-build python3
  liblmdb-dev libcurl4-openssl-dev libcjson-dev check libmicrohttpd-dev
  libxxhash-dev"

# What the tests need besides: etcd, which the coordination tests start
# privately on free loopback ports.
KVS_TEST_PACKAGES="etcd-server"

kvs_log() { printf '==> %s\n' "$*" >&2; }

# Print the packages of "$@" that are not installed.
kvs_missing_packages() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s\n' "$p"
	done
}

# Install the packages of "$@" that are missing (apt-get, only then).
kvs_install() {
	local missing sudo=""
	command -v dpkg-query >/dev/null 2>&1 || {
		kvs_log "not a Debian system: make sure these are installed: $*"
		return 0
	}
	missing=$(kvs_missing_packages "$@" | tr '\n' ' ')
	[ -n "${missing// /}" ] || return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			kvs_log "missing packages: $missing (run as root or install sudo)"
			return 1
		}
		sudo=sudo
	fi
	kvs_log "installing missing packages: $missing"
	$sudo apt-get update -qq >/dev/null &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			--no-install-recommends $missing >/dev/null || {
		kvs_log "apt-get could not install: $missing"
		return 1
	}
}

# Install the packages of "$@" that are missing without starting the
# services they ship (Debian starts a daemon's service when it is
# installed; kvshard runs private instances of them).
kvs_install_no_start() {
	local sudo="" added_policy=0 rc
	[ -n "$(kvs_missing_packages "$@" | tr -d '\n')" ] || return 0
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null &&
			$sudo chmod +x /usr/sbin/policy-rc.d && added_policy=1
	fi
	kvs_install "$@"
	rc=$?
	[ $added_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
	return $rc
}

# kvs_build DIR [MESON_ARGS...]: configure (or reconfigure) and build.
kvs_build() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null || return 1
	else
		kvs_log "configuring $dir"
		meson setup "$dir" "$@" >/dev/null || return 1
	fi
	kvs_log "building in $dir"
	ninja -C "$dir" || return 1
}
