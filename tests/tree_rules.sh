#!/bin/sh
# The tree's rules, checked (STYLE.md): every source file of src/, cuda/ and include/ opens with
# a comment saying what it is for and has at most 800 lines; every function of src/ and cuda/
# has at most 120 lines; and the folders of src/ call each other without a cycle (read from the
# library's object files: who defines each symbol, who uses it).
#   tree_rules.sh SOURCE_DIR OBJECT...
set -eu
src=$1
shift
fail=0

files=$(cd "$src" && find src cuda include -name '*.[ch]' -o -name '*.cu' | sort)
for f in $files; do
    n=$(wc -l <"$src/$f")
    if [ "$n" -gt 800 ]; then echo "$f: $n lines (at most 800)"; fail=1; fi
    if ! head -n 1 "$src/$f" | grep -q '^/\*'; then
        echo "$f: does not open with a comment saying what it is for"
        fail=1
    fi
done

# Functions: a body opened at brace depth 0 after a signature with '('; its lines are counted
# from the signature's first line to the closing brace. Strings and comments are blanked first.
for f in $(echo "$files" | grep -v '^include/'); do
    awk -v file="$f" '
    function strip(s) {
        gsub(/"([^"\\]|\\.)*"/, "\"\"", s); gsub(/\x27([^\x27\\]|\\.)*\x27/, "0", s)
        gsub(/\/\*.*\*\//, "", s); gsub(/\/\/.*/, "", s); return s
    }
    {
        line = $0
        if (incomment) { if (line ~ /\*\//) { sub(/.*\*\//, "", line); incomment = 0 } else next }
        if (line ~ /\/\*/ && line !~ /\*\//) { sub(/\/\*.*/, "", line); incomment = 1 }
        line = strip(line)
        if (depth == 0 && start == 0 && line !~ /^[ \t]*$/) { start = NR; stmt = "" }
        if (depth == 0) stmt = stmt " " line
        opens = gsub(/\{/, "{", line); closes = gsub(/\}/, "}", line)
        # A body opened at depth 0 after a signature: (...) before the brace, no initialiser.
        if (depth == 0 && opens > closes && stmt ~ /\(/ && stmt !~ /=[^=]*\{/) infn = start
        depth += opens - closes
        if (depth == 0 && (line ~ /[;}][ \t]*$/ || line ~ /^#/)) {
            if (infn && NR - infn + 1 > 120)
                printf "%s:%d: a function of %d lines (at most 120)\n", file, infn, NR - infn + 1
            infn = 0; start = 0
        }
    }' "$src/$f"
done >"${TMPDIR:-/tmp}/tree_rules_fn.$$"
if [ -s "${TMPDIR:-/tmp}/tree_rules_fn.$$" ]; then cat "${TMPDIR:-/tmp}/tree_rules_fn.$$"; fail=1; fi
rm -f "${TMPDIR:-/tmp}/tree_rules_fn.$$"

# Folder dependencies from the objects: folder A depends on B when A uses a symbol B defines.
if [ $# -gt 0 ]; then
    deps=${TMPDIR:-/tmp}/tree_rules_deps.$$
    for o in "$@"; do
        folder=$(echo "$o" | sed -n 's#.*/\(src/[a-z]*\)/[^/]*\.o$#\1#p; s#.*/\(cuda\)/[^/]*\.o$#\1#p')
        [ -n "$folder" ] || continue
        nm "$o" | awk -v f="$folder" '$1 == "U" {print "U", f, $2} $2 ~ /^[TDBRW]$/ {print "D", f, $3}'
    done | awk '$1 == "D" {def[$3] = $2} $1 == "U" {use[NR] = $2 " " $3}
               END { for (i in use) { split(use[i], u, " "); if ((u[2] in def) && def[u[2]] != u[1]) print u[1], def[u[2]] } }' |
        sort -u >"$deps"
    echo "folder dependencies (user -> definer):"
    awk '{print "  " $1 " -> " $2}' "$deps"
    # A cycle exists when the dependency graph cannot be sorted topologically.
    if ! tsort "$deps" >/dev/null 2>"$deps.err"; then
        echo "folders of src/ depend on each other in a cycle:"
        cat "$deps.err"
        fail=1
    fi
    rm -f "$deps" "$deps.err"
fi
[ "$fail" -eq 0 ] && echo "tree rules hold"
exit "$fail"
