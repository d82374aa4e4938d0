#!/bin/bash
# build-deb.sh: build the sockserve .deb from this checkout in a throwaway copy.
#   scripts/build-deb.sh [--version DEBVERSION] [--out DIR] [--lintian]
# Copies the files git knows about (tracked, plus new files not ignored) to a
# temp dir, links packaging/debian there as debian/, runs
# `dpkg-buildpackage -us -uc -b` and moves the .deb to DIR (default: dist/).
# --version builds a higher version (e.g. 0.1.1-1, for upgrade tests): the
# changelog entry is added in the temp copy only. --lintian checks the .deb
# (fails on any error or warning). Missing build dependencies are installed
# with apt-get when run as root. Prints the path of the .deb on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/dist
VERSION=""
LINTIAN=0
BUILD_DEPS=(debhelper dh-python pybuild-plugin-pyproject python3-all-dev python3-setuptools dpkg-dev gcc)

die() { echo "build-deb.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --version) VERSION=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --lintian) LINTIAN=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$LINTIAN" = 1 ] && BUILD_DEPS+=(lintian)
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

install_missing_build_deps() {
    local missing=() p
    for p in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || die "missing build dependencies (run as root or install them): ${missing[*]}"
    echo "build-deb.sh: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The committed changelog's upstream version must be pyproject's version.
check_version() {
    local py deb
    py=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)
    deb=$(dpkg-parsechangelog -l "$ROOT/packaging/debian/changelog" -S Version)
    [ "${deb%-*}" = "$py" ] || die "packaging/debian/changelog has $deb but pyproject.toml has version $py"
}

add_changelog_entry() {  # $1 = source dir, $2 = version; dated after the previous entry
    local log=$1/debian/changelog when
    when=$(( $(dpkg-parsechangelog -l "$log" -S Timestamp) + 60 ))
    [ "$(date +%s)" -gt "$when" ] && when=$(date +%s)
    { printf 'sockserve (%s) unstable; urgency=medium\n\n  * Rebuild as %s.\n\n' "$2" "$2"
      printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$log" -S Maintainer)" "$(date -R -d "@$when")"
      cat "$log"; } >"$log.new"
    mv "$log.new" "$log"
}

install_missing_build_deps
check_version
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir "$W/sockserve"
# files git knows about; ones deleted in the work tree are skipped
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$W/sockserve"
[ -d "$W/sockserve/packaging/debian" ] || die "packaging/debian missing from the copy"
ln -s packaging/debian "$W/sockserve/debian"
[ -n "$VERSION" ] && { [[ $VERSION == *-* ]] || VERSION=$VERSION-1; add_changelog_entry "$W/sockserve" "$VERSION"; }

# system PATH only: pybuild must find Debian's python3, not a pyenv/venv one
if ! (cd "$W/sockserve" && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b) \
        >"$W/build.log" 2>&1; then
    tail -n 60 "$W/build.log" >&2
    die "dpkg-buildpackage failed (last 60 lines above)"
fi
mkdir -p "$OUT"
DEB=$(cd "$W" && ls sockserve_*_"$(dpkg-architecture -qDEB_HOST_ARCH)".deb)  # Architecture: any (the C extension)
mv "$W/$DEB" "$OUT/$DEB"
if [ "$LINTIAN" = 1 ]; then
    lintian --fail-on error,warning --info "$OUT/$DEB" >&2 || die "lintian found errors or warnings in $OUT/$DEB"
fi
echo "$OUT/$DEB"
