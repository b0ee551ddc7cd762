#!/usr/bin/env bash
# Checks that libsagalane.a and libsagalane.so export every function sagalane.h declares
# (the SL_EXPORT declarations) and no other sl_* symbol, and that the shared library exports
# nothing but sl_*.
#
# Usage: check-exports.sh sagalane.h libsagalane.a libsagalane.so
# NM names the nm to use (default nm).
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 sagalane.h libsagalane.a libsagalane.so" >&2
    exit 2
fi
header=$1 static_lib=$2 shared_lib=$3
nm=${NM:-nm}

# Every declaration starts with SL_EXPORT on its own line, and the function's name is the
# last identifier before the first "(" of that line, even when the parameters go on.
declared=$(grep -E '^[[:space:]]*SL_EXPORT[[:space:]]' "$header" |
           sed -E 's/^[^(]*[^A-Za-z0-9_](sl_[A-Za-z0-9_]+)[[:space:]]*\(.*/\1/' | sort -u)
if bad=$(grep -vE '^sl_[A-Za-z0-9_]+$' <<<"$declared"); then
    echo "cannot find the function name in these SL_EXPORT declarations of $header:" >&2
    echo "$bad" | sed 's/^/    /' >&2
    exit 2
fi
declared_count=$(wc -l <<<"$declared")

status=0

# compare NAME EXPORTED: reports what the header declares that NAME lacks, and the sl_*
# symbols NAME exports that the header does not declare.
compare() {
    local name=$1 exported=$2 missing extra
    missing=$(comm -23 <(echo "$declared") <(echo "$exported" | grep '^sl_' | sort -u))
    extra=$(comm -13 <(echo "$declared") <(echo "$exported" | grep '^sl_' | sort -u))
    if [ -z "$missing" ] && [ -z "$extra" ]; then
        echo "$name: exports all $declared_count functions of sagalane.h, and no other sl_*"
        return
    fi
    status=1
    if [ -n "$missing" ]; then
        echo "$name: MISSING $(wc -l <<<"$missing") of the $declared_count functions declared in sagalane.h:"
        echo "$missing" | sed 's/^/    /'
    fi
    if [ -n "$extra" ]; then
        echo "$name: EXPORTS $(wc -l <<<"$extra") sl_* symbols that sagalane.h does not declare:"
        echo "$extra" | sed 's/^/    /'
    fi
}

# Global definitions in the archive: lines of nm -g are "value type name" (member headers and
# blank lines have fewer fields).
static_exports=$("$nm" -g --defined-only "$static_lib" | awk 'NF == 3 { print $3 }')
compare "$(basename "$static_lib")" "$static_exports"

shared_exports=$("$nm" -D --defined-only "$shared_lib" | awk 'NF == 3 { print $3 }')
compare "$(basename "$shared_lib")" "$shared_exports"
others=$(grep -v '^sl_' <<<"$shared_exports" || true)
if [ -n "$others" ]; then
    status=1
    echo "$(basename "$shared_lib"): EXPORTS $(wc -l <<<"$others") symbols outside the C API (the version script should hide them):"
    echo "$others" | head -20 | sed 's/^/    /'
fi

exit $status
