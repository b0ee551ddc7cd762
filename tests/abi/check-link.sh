#!/usr/bin/env bash
# Links smoke.c (and, for the static library, smoke.cpp) the way the README tells a host to,
# runs them, and checks with ldd that no Swift library is loaded: the Swift runtime must be
# inside libsagalane.
#
# Usage: check-link.sh static|shared SOURCE_DIR LIBRARY_DIR INCLUDE_DIR PKG_CONFIG_DIR WORK_DIR
# CC and CXX name the compilers (default cc and c++).
set -euo pipefail

if [ $# -ne 6 ]; then
    echo "usage: $0 static|shared SOURCE_DIR LIBRARY_DIR INCLUDE_DIR PKG_CONFIG_DIR WORK_DIR" >&2
    exit 2
fi
kind=$1 src=$2 libdir=$3 incdir=$4 pcdir=$5 work=$6
cc=${CC:-cc} cxx=${CXX:-c++}
mkdir -p "$work"
export PKG_CONFIG_PATH=$pcdir

# check PROGRAM: runs it, then checks what it loads.
check() {
    local program=$1 libs
    "$program"
    libs=$(ldd "$program")
    if grep -Ei 'libswift|libdispatch|libBlocksRuntime|libFoundation' <<<"$libs"; then
        echo "FAIL: $(basename "$program") loads a Swift library (above)" >&2
        exit 1
    fi
    case "$kind" in
        static)
            if grep libsagalane <<<"$libs"; then
                echo "FAIL: $(basename "$program") loads libsagalane.so; it should hold the archive" >&2
                exit 1
            fi ;;
        shared)
            if ! grep -q 'libsagalane\.so\.[0-9]* => /' <<<"$libs"; then
                echo "FAIL: $(basename "$program") does not load libsagalane.so:" >&2
                echo "$libs" >&2
                exit 1
            fi ;;
    esac
}

# shellcheck disable=SC2046 # pkg-config's output is meant to be split into words
case "$kind" in
    static)
        set -x
        "$cc" -I"$incdir" "$src/smoke.c" "$libdir/libsagalane.a" \
            -luv -lsqlite3 -lstdc++ -lm -lpthread -ldl -o "$work/smoke-static"
        "$cc" "$src/smoke.c" $(pkg-config --cflags --libs sagalane-static) -o "$work/smoke-static-pc"
        "$cxx" -I"$incdir" "$src/smoke.cpp" "$libdir/libsagalane.a" \
            -luv -lsqlite3 -lm -lpthread -ldl -o "$work/smoke-static-cxx"
        { set +x; } 2>/dev/null
        check "$work/smoke-static"
        check "$work/smoke-static-pc"
        check "$work/smoke-static-cxx"
        ;;
    shared)
        set -x
        "$cc" -I"$incdir" "$src/smoke.c" -L"$libdir" -lsagalane -Wl,-rpath,"$libdir" \
            -o "$work/smoke-shared"
        "$cc" "$src/smoke.c" $(pkg-config --cflags --libs sagalane) -Wl,-rpath,"$libdir" \
            -o "$work/smoke-shared-pc"
        { set +x; } 2>/dev/null
        check "$work/smoke-shared"
        check "$work/smoke-shared-pc"
        ;;
    *)
        echo "$0: the first argument is static or shared" >&2
        exit 2
        ;;
esac
