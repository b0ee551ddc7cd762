#!/usr/bin/env bash
# The sagalane binary is linked statically (the C library and its companions only), and it
# answers as an operator expects: a version, help, diagnostics of a log, clear errors.
#   check-binary.sh SAGALANE WORKDIR MAKE_LOG
# MAKE_LOG PATH makes an empty log at PATH (a host does: the binary only reads and vacuums).
set -euo pipefail
binary=$1 work=$2 make_log=$3
rm -rf "$work" && mkdir -p "$work"

libraries=$(ldd "$binary")
if grep -E 'libswift|libdispatch|libFoundation|libuv|libsqlite3' <<<"$libraries"; then
    echo "check-binary: $binary loads the libraries above; it should be static but for libc" >&2
    exit 1
fi

"$binary" version | grep -Eq '^sagalane [0-9]+\.[0-9]+\.[0-9]+$'
"$binary" --help | grep -q '^USAGE: sagalane <subcommand>'
"$binary" sagas list --help | grep -q '^USAGE: sagalane sagas list <db>'
"$binary" agent --help | grep -q '^USAGE: sagalane agent \[--data-dir <dir>\]'

# A missing database is an error that names it, with exit status 2 (a bad argument), as is a
# bad command; neither prints anything on standard output.
status=0; "$binary" sagas list "$work/missing.db" > "$work/out" 2> "$work/err" || status=$?
[ "$status" -eq 2 ] && grep -q "missing.db" "$work/err" && [ ! -s "$work/out" ]
status=0; "$binary" no-such-command 2> /dev/null || status=$?
[ "$status" -eq 2 ]

# vacuum writes, but never makes a log: on a missing path it fails and creates nothing.
if "$binary" vacuum "$work/none.db" --older-than 7d 2> "$work/err"; then exit 1; fi
[ ! -e "$work/none.db" ] && [ ! -e "$work/none.db-lock" ]

# An empty log, made by a host, reads back as empty; in a pipe the output is JSON.
"$make_log" "$work/log.db" > /dev/null
"$binary" vacuum "$work/log.db" --older-than 7d | grep -q '"sagas_deleted":0,'
[ "$("$binary" sagas list "$work/log.db")" = "[]" ]
[ "$("$binary" sagas unresolved "$work/log.db")" = "[]" ]
[ "$("$binary" jobs "$work/log.db" --lane gpu --state queued --limit 5)" = "[]" ]
[ "$("$binary" lanes "$work/log.db")" = "[]" ]
[ "$("$binary" recover "$work/log.db" --dry-run)" = "[]" ]
[ "$("$binary" sagas list "$work/log.db" --format table)" = "no sagas match" ]
"$binary" stats "$work/log.db" | grep -q '"jobs":{},"oldest_running_saga":null'
"$binary" stats "$work/log.db" | grep -q '"schema_version":[1-9]'
status=0; "$binary" jobs "$work/log.db" --state done 2> "$work/err" || status=$?
[ "$status" -eq 2 ] && grep -q "unknown job state 'done'" "$work/err"
status=0; "$binary" sagas show "$work/log.db" 1 2> "$work/err" || status=$?
[ "$status" -eq 1 ] && grep -q "no saga 1" "$work/err"
echo "check-binary: ok"
