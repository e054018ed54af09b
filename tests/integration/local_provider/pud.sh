#!/bin/sh
# Stand-in for process-user-data, run as `/bin/sh pud.sh [ok|fail] <args>`:
# checks the arguments the provider passes, hands the user data over as
# apf.json the way the real one provisions it, and records how it ran.
mode=$1
shift
echo "pud $$" >>"$STANDIN_PIDS"
[ "$mode" = fail ] && exit 3
[ $# -eq 5 ] && [ "$1" = provision-files ] && [ "$2" = --from ] && [ "$4" = --root ] || exit 2
mkdir -p "$5/run/peerpod" && cp "$3" "$5/run/peerpod/apf.json" || exit 1
{
    echo "argv $*"
    echo "netns $(readlink /proc/$$/ns/net)"
} >"${3%/*}/pud.record"
