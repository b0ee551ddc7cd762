#!/usr/bin/env bash
# Turns SwiftPM's archive of the C API and the core (product SagaLaneCStatic) into one
# self-contained relocatable object and libsagalane.a, so that a C host links with
#
#     cc host.c libsagalane.a -luv -lsqlite3 -lstdc++ -lm -lpthread -ldl
#
# and needs no Swift toolchain and no Swift shared library.
#
#   1. ld -r: swiftrt.o + every object of the SwiftPM archive + the members of the Swift
#      runtime archives they need. swiftrt.o registers the object's Swift metadata sections
#      with the runtime; without it the first use of generic metadata crashes.
#   2. objcopy: every strong global becomes local except the sl_* functions, so the runtime's
#      symbols cannot clash with the host's. Weak symbols stay global: the ones from C++
#      templates sit in COMDAT groups the host may also define, and a localized group
#      signature makes the host's link fail with "defined in discarded section".
#   3. ar: the object alone in libsagalane.a.
#
# The shared library is linked from the same object (see CMakeLists.txt).
#
# Usage: prelink-static.sh --swiftpm-archive A --swift-static-dir D --swiftrt O
#            --autolink-extract P --object OUT.o --archive OUT.a [--ld L] [--objcopy C]
#            [--ar R] [--nm N]
#   D is the toolchain's swift_static/<platform> folder, O its <arch>/swiftrt.o.
set -euo pipefail

ld=ld objcopy=objcopy ar=ar nm=nm
swiftpm_archive= static_dir= swiftrt= autolink_extract= out_object= out_archive=
while [ $# -gt 0 ]; do
    case "$1" in
        --swiftpm-archive) swiftpm_archive=$2 ;;
        --swift-static-dir) static_dir=$2 ;;
        --swiftrt) swiftrt=$2 ;;
        --autolink-extract) autolink_extract=$2 ;;
        --object) out_object=$2 ;;
        --archive) out_archive=$2 ;;
        --ld) ld=$2 ;;
        --objcopy) objcopy=$2 ;;
        --ar) ar=$2 ;;
        --nm) nm=$2 ;;
        *) echo "prelink-static.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in swiftpm_archive static_dir swiftrt autolink_extract out_object out_archive; do
    if [ -z "${!v}" ]; then echo "prelink-static.sh: --${v//_/-} is required" >&2; exit 2; fi
done

work=$(dirname "$out_object")
mkdir -p "$work" "$(dirname "$out_archive")"

# The libraries to link come from the objects themselves: swiftc records each imported
# module's library (-lswiftCore, -lswiftSynchronization, -lswiftSwiftOnoneSupport in debug
# builds, -luv, ...) in the objects, and swift-autolink-extract lists them. The toolchain's
# static-stdlib-args.lnk adds what the runtime itself needs (libdispatch, BlocksRuntime).
# A library with an archive in swift_static is part of the Swift runtime and goes into the
# object; every other one is the host's to link.
# shellcheck disable=SC2207
wanted=($( { "$autolink_extract" "$swiftpm_archive" -o - | tr -s ' \t' '\n'
             tr -s ' \t' '\n' < "$static_dir/static-stdlib-args.lnk"; } |
           sed -n 's/^-l//p' | awk '!seen[$0]++'))
runtime_archives=() host_libs=()
for lib in "${wanted[@]}"; do
    if [ -f "$static_dir/lib$lib.a" ]; then
        runtime_archives+=("$static_dir/lib$lib.a")
    else
        host_libs+=("$lib")
    fi
done

# The host link line (SAGALANE_HOST_LIBS in CMakeLists.txt, sagalane.pc) covers these. libutil and
# librt are empty stubs in glibc 2.34 and later, so hosts need not name them.
for lib in "${host_libs[@]}"; do
    case "$lib" in
        uv | sqlite3 | stdc++ | m | pthread | dl | util | rt) ;;
        *) echo "prelink-static.sh: warning: the objects also need -l$lib, which the" \
                "documented host link line does not include" >&2 ;;
    esac
done

prelinked="$work/prelinked.o"
"$ld" -r -o "$prelinked" "$swiftrt" \
    --whole-archive "$swiftpm_archive" --no-whole-archive \
    --start-group "${runtime_archives[@]}" --end-group

# Whatever the Swift runtime should have provided and did not means a runtime archive is
# missing from the list above: fail here rather than in every host's link.
missing=$("$nm" -u "$prelinked" | awk '{print $NF}' |
          grep -E '^(\$s|swift_|_swift_|dispatch_|_dispatch_|_Block_)' || true)
if [ -n "$missing" ]; then
    echo "prelink-static.sh: the Swift runtime archives left these undefined:" >&2
    echo "$missing" | head -20 | sed 's/^/    /' >&2
    exit 1
fi

# Defined strong globals other than sl_*. nm prints "value type name"; the name may contain
# spaces (Swift's "associated conformance ..." symbols), so it is cut out, not split out.
"$nm" -g --defined-only "$prelinked" |
    awk '$2 !~ /^[VWvwu]$/ { name = substr($0, length($1) + length($2) + 3)
                             if (name !~ /^sl_/) print name }' > "$work/localize.txt"

# The autolink section would tell a swiftc that links this archive to add the Swift runtime
# a second time; C and C++ linkers ignore it. It has no use here.
"$objcopy" --localize-symbols="$work/localize.txt" \
    --remove-section=.swift1_autolink_entries "$prelinked" "$out_object.tmp"
mv "$out_object.tmp" "$out_object"
rm -f "$prelinked"

rm -f "$out_archive.tmp"
"$ar" rcs "$out_archive.tmp" "$out_object"
mv "$out_archive.tmp" "$out_archive"
