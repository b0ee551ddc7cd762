#!/usr/bin/env bash
# The sagalane binary carries its whole runtime but the C library: the dynamic loader finds
# only libc, libm and itself to load (the kernel's vDSO aside), it asks for no symbol of
# libstdc++ or libgcc_s, and stripped it stays within MAX_BYTES.
#   check-binary-static.sh SAGALANE WORKDIR MAX_BYTES
# READELF, OBJDUMP and STRIP name the binutils to use (default: from PATH).
set -euo pipefail
binary=$1 work=$2 max_bytes=$3
readelf=${READELF:-readelf} objdump=${OBJDUMP:-objdump} strip=${STRIP:-strip}
rm -rf "$work" && mkdir -p "$work"

fail() { echo "check-binary-static: $binary: $*" >&2; exit 1; }

# ldd lists what the loader would load, direct needs and theirs. It fails on a binary with no
# dynamic section at all: glibc is meant to stay shared (NSS, dlopen).
ldd "$binary" > "$work/ldd" 2>&1 || fail "ldd fails: $(cat "$work/ldd")"
unexpected=$(grep -Ev '^[[:space:]]*(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|/[^ ]*/ld-linux[^ ]*\.so\.[0-9]+)[[:space:]]' \
    "$work/ldd" || true)
[ -z "$unexpected" ] || fail "loads more than libc, libm and the loader:
$unexpected"
grep -Eq '^[[:space:]]*libc\.so\.6 => /' "$work/ldd" || fail "ldd shows no libc: $(cat "$work/ldd")"

# The same from the file itself, whatever this machine's ldd or libraries would add.
"$readelf" -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' > "$work/needed"
unexpected=$(grep -Ev '^(libc\.so\.6|libm\.so\.6|ld-linux[^ ]*\.so\.[0-9]+)$' "$work/needed" || true)
[ -z "$unexpected" ] || fail "NEEDED names more than libc, libm and the loader:
$unexpected"

# A symbol versioned GLIBCXX, CXXABI or GCC would be looked for in libstdc++ or libgcc_s.
"$objdump" -T "$binary" > "$work/dynsyms"
if grep -E '\((GLIBCXX|CXXABI|GCC)_[0-9.]+\)' "$work/dynsyms" > "$work/cxx-symbols"; then
    fail "imports C++ runtime symbols:
$(head -5 "$work/cxx-symbols")"
fi

"$strip" -o "$work/sagalane.stripped" "$binary"
size=$(stat -c %s "$work/sagalane.stripped")
[ "$size" -le "$max_bytes" ] || fail "is $size bytes stripped, over $max_bytes"

# It still starts and answers once stripped.
"$work/sagalane.stripped" version | grep -Eq '^sagalane [0-9]+\.[0-9]+\.[0-9]+$' \
    || fail "stripped, it does not answer 'version'"
echo "check-binary-static: ok ($size bytes stripped, limit $max_bytes; loads: $(tr '\n' ' ' < "$work/needed"))"
