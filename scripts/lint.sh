#!/usr/bin/env bash
# Checks every C file of the project: clang-format clean, and none of the
# banned calls (unbounded or unchecked: use snprintf, bounded copies, strtol
# with checks). Prints what is wrong and exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.c' '*.h')
status=0

unformatted=()
for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ ${#unformatted[@]} -gt 0 ]; then
    echo "lint: not clang-formatted (run clang-format -i):"
    printf '  %s\n' "${unformatted[@]}"
    status=1
fi

banned=$(grep -nHE '(^|[^a-z_])(sprintf|vsprintf|strcpy|strcat|atoi|atol|atoll|gets)[[:space:]]*\(' \
    "${files[@]}" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*|//)' || true)
if [ -n "$banned" ]; then
    echo "lint: banned calls:"
    echo "$banned"
    status=1
fi

[ $status -eq 0 ] && echo "lint: ${#files[@]} files clean"
exit $status
