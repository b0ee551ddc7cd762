#!/usr/bin/env bash
# Installs the build tree into a scratch prefix and builds hosts against the installed files
# alone: a C host through pkg-config (sagalane-static.pc, then sagalane.pc), and C and C++
# hosts through find_package(sagalane), static then shared.
#
# Usage: check-install.sh CMAKE BUILD_DIR SOURCE_DIR WORK_DIR VERSION GENERATOR
# CC and CXX name the compilers (default cc and c++).
set -euo pipefail

if [ $# -ne 6 ]; then
    echo "usage: $0 CMAKE BUILD_DIR SOURCE_DIR WORK_DIR VERSION GENERATOR" >&2
    exit 2
fi
cmake=$1 build=$2 src=$3 work=$4 version=$5 generator=$6
cc=${CC:-cc} cxx=${CXX:-c++}
prefix=$work/prefix

rm -rf "$work"
"$cmake" --install "$build" --prefix "$prefix"

# The library folder is lib or lib/<multiarch>, as GNUInstallDirs chose for the prefix.
libdir=$(dirname "$(find "$prefix" -name libsagalane.a -print -quit)")
major=${version%%.*}
for f in "$prefix/include/sagalane.h" "$libdir/libsagalane.a" "$libdir/libsagalane.so.$version" \
         "$libdir/pkgconfig/sagalane.pc" "$libdir/pkgconfig/sagalane-static.pc" \
         "$libdir/cmake/sagalane/sagalaneConfig.cmake" \
         "$libdir/cmake/sagalane/sagalaneConfigVersion.cmake"; do
    [ -f "$f" ] || { echo "FAIL: $f was not installed" >&2; exit 1; }
done
[ "$(readlink "$libdir/libsagalane.so")" = "libsagalane.so.$major" ] &&
[ "$(readlink "$libdir/libsagalane.so.$major")" = "libsagalane.so.$version" ] ||
    { echo "FAIL: the libsagalane.so symlinks are wrong:" >&2; ls -l "$libdir" >&2; exit 1; }
soname=$(readelf -d "$libdir/libsagalane.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "libsagalane.so.$major" ] || { echo "FAIL: soname is '$soname'" >&2; exit 1; }

# check PROGRAM static|shared: runs it and checks where its sagalane comes from.
check() {
    local libs
    "$1"
    libs=$(ldd "$1")
    if grep -Ei 'libswift|libdispatch|libBlocksRuntime|libFoundation' <<<"$libs"; then
        echo "FAIL: $(basename "$1") loads a Swift library (above)" >&2; exit 1
    fi
    if [ "$2" = static ] && grep libsagalane <<<"$libs"; then
        echo "FAIL: $(basename "$1") loads libsagalane.so instead of holding the archive" >&2; exit 1
    fi
    if [ "$2" = shared ] && ! grep -q "libsagalane.so.$major => $libdir/" <<<"$libs"; then
        echo "FAIL: $(basename "$1") does not load the installed libsagalane.so:" >&2
        echo "$libs" >&2; exit 1
    fi
}

export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046 # pkg-config's output is meant to be split into words
(
    set -x
    "$cc" "$src/smoke.c" $(pkg-config --cflags --libs sagalane-static) -o "$work/smoke-pc-static"
    "$cc" "$src/smoke.c" $(pkg-config --cflags --libs sagalane) -Wl,-rpath,"$libdir" \
        -o "$work/smoke-pc-shared"
)
check "$work/smoke-pc-static" static
check "$work/smoke-pc-shared" shared

for kind in static shared; do
    use_shared=OFF
    [ "$kind" = shared ] && use_shared=ON
    "$cmake" -G "$generator" -S "$src/find-package" -B "$work/find-package-$kind" \
        -DCMAKE_PREFIX_PATH="$prefix" -DSAGALANE_EXPECTED_VERSION="$version" \
        -DSAGALANE_USE_SHARED=$use_shared -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
    "$cmake" --build "$work/find-package-$kind"
    check "$work/find-package-$kind/smoke-c" "$kind"
    check "$work/find-package-$kind/smoke-cxx" "$kind"
done
echo "installed tree at $prefix: pkg-config and find_package hosts link and run"
