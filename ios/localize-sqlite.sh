#!/usr/bin/env bash
# Makes the bundled SQLite's `sqlite3_*` symbols local to one per-target Apple static library
# (libdualpub.a for one Rust target, before lipo), so that an app which also links the system
# SQLite (GRDB, Firebase, Core Data...) cannot bind its references, or ours, to the wrong copy
# (ios/README.md, "The bundled SQLite stays private").
#
#   ios/localize-sqlite.sh <libdualpub.a>            localise in place (macOS only: needs Apple's ld)
#   ios/localize-sqlite.sh --dry-run <libdualpub.a>  only select the members and list the symbols
#       [--members FILE] [--symbols FILE]            (also writes them to these files)
#
# How (as matrix-rust-sdk does for its FFI library):
#  1. list the archive members that define or reference a `sqlite3_*` symbol, expanded to whole
#     crates: every codegen unit of the same Rust crate (member `<crate>-<hash>.<crate>.<cgu>.rcgu.o`,
#     the crate being built is `<crate>.<...>.rcgu.o`) and every C object from the same cc-rs build
#     directory (`<16 hex digits>-<file>.o`), because units of one crate share hidden symbols that
#     `ld -r` turns local and that would then no longer bind from a unit left outside the merge;
#  2. the symbol list is every global `sqlite3_*` those members define (with Mach-O's leading
#     underscore: `_sqlite3_open_v2`);
#  3. `ar x` those members, `ar d` them from the library, `ld -r -unexported_symbols_list <list>`
#     merges them into one object in which the listed symbols are local (ld infers the
#     architecture and platform from the objects), `ar r` puts it back, `ranlib`;
#  4. post-check: `nm` shows no global `sqlite3_*` definition and no undefined `sqlite3_*`
#     reference left, and every `uniffi_*` / `ffi_dualpub_*` export is still there; else it fails
#     and leaves the library as it was.
# Steps 1-2 run anywhere with an LLVM nm (--dry-run; scripts/mobile-check runs them on the Linux
# host build, whose symbols have no leading underscore; NM=<command> picks the nm). Steps 3-4 need
# Apple's `ld` and run on macOS only: not on the project's build machine (no Apple toolchain
# there) but in CI (.github/workflows/mobile.yml), through build-xcframework.sh.
set -euo pipefail

usage() { echo "usage: $0 [--dry-run] [--members FILE] [--symbols FILE] <libdualpub.a>" >&2; exit 2; }

dry_run=0 members_out="" symbols_out="" lib=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --members) [ $# -ge 2 ] || usage; members_out=$2; shift ;;
        --symbols) [ $# -ge 2 ] || usage; symbols_out=$2; shift ;;
        -*) usage ;;
        *) [ -z "$lib" ] || usage; lib=$1 ;;
    esac
    shift
done
[ -n "$lib" ] || usage
[ -f "$lib" ] || { echo "$0: no such library: $lib" >&2; exit 1; }

darwin=0
[ "$(uname -s)" = Darwin ] && darwin=1
if [ "$dry_run" -eq 0 ] && [ "$darwin" -eq 0 ]; then
    echo "$0: localising needs Apple's ld (macOS with Xcode); elsewhere only --dry-run works" >&2
    exit 1
fi

# Xcode's tools on macOS; elsewhere (the dry run) llvm-nm if there is one. NM overrides.
if [ "$darwin" -eq 1 ]; then
    ar=(xcrun ar) ranlib=(xcrun ranlib) ld=(xcrun ld)
    default_nm="xcrun nm"
else
    ar=(ar) ranlib=(ranlib) ld=(ld)
    if command -v llvm-nm > /dev/null; then default_nm="llvm-nm"; else default_nm="nm"; fi
fi
read -r -a nm <<< "${NM:-$default_nm}"
# An LLVM nm reads the bitcode Rust embeds next to the machine code (the standard library's
# objects have it) instead of the object's own symbol table, and fails on bitcode from a newer
# LLVM than its own: read the symbol table.
nm_help=$("${nm[@]}" --help 2>&1 || true)
case "$nm_help" in *--no-llvm-bc*) nm+=(--no-llvm-bc) ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/localize-sqlite.XXXXXX")
trap 'rm -rf "$work"' EXIT

# symbols <archive> <out>: one line per symbol, "member<TAB>name<TAB>type" (nm's POSIX format,
# `archive[member]: name type value size`). Any error from nm is fatal: a member nm cannot read
# might reference SQLite.
symbols() {
    local archive=$1 out=$2 status=0
    "${nm[@]}" -A -P "$archive" > "$work/nm.out" 2> "$work/nm.err" || status=$?
    grep -v ': no symbols$' "$work/nm.err" > "$work/nm.errors" || true
    if [ "$status" -ne 0 ] || [ -s "$work/nm.errors" ]; then
        echo "$0: ${nm[*]} could not read every member of $archive (exit $status):" >&2
        head -n 5 "$work/nm.errors" >&2
        exit 1
    fi
    awk -v prefix="${archive}[" '
        index($0, prefix) == 1 {
            rest = substr($0, length(prefix) + 1)
            end = index(rest, "]: ")
            if (end == 0) next
            split(substr(rest, end + 3), f, " ")
            print substr(rest, 1, end - 1) "\t" f[1] "\t" f[2]
        }' "$work/nm.out" > "$out"
    [ -s "$out" ] || { echo "$0: ${nm[*]} listed no symbols in $archive" >&2; exit 1; }
}

# The archive's members in order, without a BSD symbol table entry (cctools ar lists __.SYMDEF).
members() { "${ar[@]}" t "$1" | grep -v '^__\.SYMDEF' || true; }

symbols "$lib" "$work/before.tsv"
members "$lib" > "$work/members.txt"

# Mach-O prefixes C names with an underscore (_uniffi_..., _sqlite3_...); ELF does not.
if grep -qE $'\t_(uniffi|ffi_dualpub)_' "$work/before.tsv"; then
    us=_
elif grep -qE $'\t(uniffi|ffi_dualpub)_' "$work/before.tsv"; then
    us=
else
    echo "$0: $lib exports no uniffi_* function: not a dualpub library?" >&2
    exit 1
fi

# Global definitions are upper-case types other than U; references are U and ELF's weak w/v.
# exports <symbols.tsv>: the library's uniffi / ffi_dualpub exports, sorted.
exports() {
    awk -F'\t' -v re="^${us}(uniffi|ffi_dualpub)_" '$3 ~ /^[A-TV-Z]$/ && $2 ~ re { print $2 }' "$1" | sort -u
}

# 1-2: the members to merge and the symbols to make local.
: > "$work/selected.txt"; : > "$work/list.txt"; : > "$work/touched.txt"
awk -F'\t' -v re="^${us}sqlite3_" -v selected_file="$work/selected.txt" \
    -v list_file="$work/list.txt" -v touched_file="$work/touched.txt" -v counts_file="$work/counts" '
    # The unit a member belongs to: a Rust crate (codegen units <crate>[-<hash>].<...>.rcgu.o)
    # or a cc-rs build directory (<16 hex digits>-<file>.o); anything else stands alone.
    function unit(m,   hex) {
        if (m ~ /\.rcgu\.o$/) return "rust:" substr(m, 1, index(m, ".") - 1)
        hex = substr(m, 1, 16)
        if (substr(m, 17, 1) == "-" && length(hex) == 16 && hex ~ /^[0-9a-f]+$/) return "c:" hex
        return "member:" m
    }
    FNR == NR {                                  # the symbols: member, name, type
        if ($2 !~ re) next
        if ($3 ~ /^[A-Z]$/ || $3 == "w" || $3 == "v") {        # a global definition or a reference
            if (!($1 in touched)) { touched[$1] = 1; print $1 > touched_file }
            units[unit($1)] = 1
            if ($3 == "U" || $3 == "w" || $3 == "v") references++
            else if (!($2 in listed)) { listed[$2] = 1; print $2 > list_file }
        } else {
            locals++
        }
        next
    }
    (unit($0) in units) { print > selected_file }               # the members, in archive order
    END { print references + 0, locals + 0 > counts_file }' "$work/before.tsv" "$work/members.txt"
sort -o "$work/list.txt" "$work/list.txt"
read -r references locals < "$work/counts"

total=$(wc -l < "$work/members.txt" | tr -d ' ')
touched=$(wc -l < "$work/touched.txt" | tr -d ' ')
selected=$(wc -l < "$work/selected.txt" | tr -d ' ')
listed=$(wc -l < "$work/list.txt" | tr -d ' ')
[ -z "$members_out" ] || cp "$work/selected.txt" "$members_out"
[ -z "$symbols_out" ] || cp "$work/list.txt" "$symbols_out"

if [ "$listed" -eq 0 ]; then
    if [ "$references" -eq 0 ] && [ "$locals" -gt 0 ]; then
        echo "$lib: SQLite is already local ($locals local sqlite3_* symbols, no global definition or reference)"
        exit 0
    fi
    echo "$0: $lib defines no sqlite3_* symbol ($references references): is SQLite bundled (rusqlite \"bundled\")?" >&2
    exit 1
fi
duplicates=$(grep -Fx -f "$work/selected.txt" "$work/members.txt" | sort | uniq -d)
if [ -n "$duplicates" ]; then
    echo "$0: $lib has several members named $(echo "$duplicates" | head -n 1): cannot extract them one by one" >&2
    exit 1
fi
echo "$lib: $listed sqlite3_* symbols to make local; $touched members define or reference them, $selected of $total members to merge (whole crates)"

if [ "$dry_run" -eq 1 ]; then
    sed 's/^/  merge: /' "$work/selected.txt"
    exit 0
fi

# 3: merge the selected members into one object with the listed symbols local.
mkdir "$work/objects"
cp "$lib" "$work/lib.a"
selected_members=()
while IFS= read -r m; do selected_members+=("$m"); done < "$work/selected.txt"
(cd "$work/objects" && "${ar[@]}" x "$work/lib.a" "${selected_members[@]}")
"${ar[@]}" d "$work/lib.a" "${selected_members[@]}"
objects=()
for m in "${selected_members[@]}"; do objects+=("$work/objects/$m"); done
merged=$work/dualpub-sqlite-local.o
"${ld[@]}" -r -unexported_symbols_list "$work/list.txt" -o "$merged" "${objects[@]}"
"${ar[@]}" r "$work/lib.a" "$merged"
"${ranlib[@]}" "$work/lib.a"

# 4: the post-check, on the new library before it replaces the old one.
symbols "$work/lib.a" "$work/after.tsv"
global=$(awk -F'\t' -v re="^${us}sqlite3_" '$2 ~ re && $3 ~ /^[A-TV-Z]$/' "$work/after.tsv" | wc -l | tr -d ' ')
undefined=$(awk -F'\t' -v re="^${us}sqlite3_" '$2 ~ re && ($3 == "U" || $3 == "w" || $3 == "v")' "$work/after.tsv" | wc -l | tr -d ' ')
missing=$(comm -23 <(exports "$work/before.tsv") <(exports "$work/after.tsv"))
exported=$(exports "$work/after.tsv" | wc -l | tr -d ' ')
if [ "$global" -ne 0 ] || [ "$undefined" -ne 0 ] || [ -n "$missing" ]; then
    echo "$0: localising $lib failed its check: $global global sqlite3_* definitions, $undefined undefined sqlite3_* references, $(echo "$missing" | grep -c . || true) uniffi exports lost (library left unchanged)" >&2
    exit 1
fi
mv "$work/lib.a" "$lib"
echo "$lib: no global or undefined sqlite3_* symbol left; all $exported uniffi/ffi_dualpub exports intact"
