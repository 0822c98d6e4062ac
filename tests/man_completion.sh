#!/bin/bash
# The man page and the bash completion that the build writes (cmake/docs.cmake) against the
# commands they describe: every flag of `cutune train --help` and of every other command's --help
# is in cutune.1 and is offered by the completion, the completion script loads and completes
# flags, values and file names as bash would call it, and groff renders the page without a
# warning (that part is skipped, saying so, where groff is not installed).
#   man_completion.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
cli=$build/cutune
man=$build/cutune.1
completion=$build/cutune.bash
work=$(mktemp -d /tmp/cutune_man_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
problem() { echo "man_completion: $*"; fail=1; }

test -s "$man" || { echo "man_completion: no $man (the build writes it)"; exit 1; }
test -s "$completion" || { echo "man_completion: no $completion (the build writes it)"; exit 1; }

# The page as text: roff's escaped minus (\-) back to '-'.
sed 's/\\-/-/g' "$man" >"$work/man.txt"

# The flags a --help text lists: "--name" tokens of its usage paragraph and option lines.
help_flags() { "$cli" "$@" --help | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u; }

# What the completion function offers for a command line whose last word is being completed.
complete_line() {
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
             _cutune; printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@"
}

# train: every setting of the table (its --help lines) is a .TP entry of the page.
train=$(help_flags train)
n_train=$(wc -l <<<"$train")
[ "$n_train" -ge 60 ] || problem "cutune train --help lists only $n_train flags"
for flag in $train; do
    grep -qF -- "\\fB${flag//-/\\-}\\fR" "$man" ||
        problem "cutune.1 has no entry for train $flag"
done
offered=$(complete_line cutune train --)
for flag in $train; do
    grep -qx -- "$flag" <<<"$offered" || problem "completion of 'cutune train --' lacks $flag"
done

# Every other command: its flags on the page and offered by the completion.
commands=$("$cli" --help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')
for cmd in $commands; do
    grep -qxF ".B ${cmd//-/\\-}" "$man" ||
        problem "cutune.1 does not list $cmd"
    [ "$cmd" = train ] && continue
    offered=$(complete_line cutune "$cmd" --)
    for flag in $(help_flags "$cmd" | grep -vx -- '--help'); do
        grep -q -- "$flag" "$work/man.txt" || problem "cutune.1 lacks $cmd $flag"
        grep -qx -- "$flag" <<<"$offered" || problem "completion of 'cutune $cmd --' lacks $flag"
    done
done

# The script as bash loads it, and completions a user would ask for.
registered=$(bash -c 'source "$1"; complete -p cutune' _ "$completion")
[ "$registered" = "complete -F _cutune cutune" ] || problem "complete -p cutune gave '$registered'"
expect() { # expect WORD COMMAND-LINE...: WORD is among the completions
    local want=$1
    shift
    grep -qx -- "$want" <<<"$(complete_line "$@")" || problem "completing '$*' does not offer $want"
}
refuse() { # refuse WORD COMMAND-LINE...: WORD is not among the completions
    local unwanted=$1
    shift
    if grep -qx -- "$unwanted" <<<"$(complete_line "$@")"; then
        problem "completing '$*' offers $unwanted"
    fi
}
expect --batch-size cutune train --bat
expect evaluate cutune ev
expect export-keras cutune exp
expect adamw cutune train --optimizer ''
expect adam cutune train --optimizer = a
expect imagenet cutune train --weights ''
expect hflip,vflip cutune predict --tta ''
expect --sweep-freeze cutune bench --sweep-f
expect bash-completion cutune docs b
refuse --lr cutune train --batch-size ''
mkdir -p "$work/files/runs"
touch "$work/files/model.h5"
grep -qx model.h5 <<<"$(cd "$work/files" && complete_line cutune predict --model m)" ||
    problem "completing 'cutune predict --model m' does not offer model.h5"
grep -qx runs <<<"$(cd "$work/files" && complete_line cutune train --out r)" ||
    problem "completing 'cutune train --out r' does not offer the folder runs"

# groff: the page renders, and without a warning (-ww turns every warning on).
if command -v groff >/dev/null 2>&1; then
    groff -man -Tascii -ww "$man" >"$work/page.txt" 2>"$work/groff.err" || problem "groff failed"
    if [ -s "$work/groff.err" ]; then
        problem "groff warns:"
        cat "$work/groff.err"
    fi
    grep -q -- "--batch-size N" "$work/page.txt" || problem "the rendered page lacks --batch-size N"
else
    echo "man_completion: SKIP the groff check: groff is not installed"
fi

[ "$fail" -eq 0 ] && echo "man_completion: $n_train train flags and $(wc -w <<<"$commands")" \
    "commands in cutune.1 and the completion"
exit "$fail"
