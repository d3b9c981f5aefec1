#!/usr/bin/env bash
# Prints a Markdown report of the package map: per package directory its files, lines, test
# lines and exported names; for internal/ packages the exported names no other package uses;
# and the 15 longest functions. Meant for comparing the tree before and after a restructure:
# save the output of each and diff them.
#
#   scripts/pkgmap.sh              report on the repository this script lives in
#   scripts/pkgmap.sh DIR          report on the module rooted at DIR (another worktree, say),
#                                  measured with this tree's program
#
# The counting is done by internal/tools/pkgmap (go/parser and go/ast, standard library
# only), run with `go run` from this repository; its doc comment says what is counted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

root=${1:-.}
if [ ! -f "$root/go.mod" ]; then
	echo "pkgmap.sh: $root/go.mod not found" >&2
	exit 2
fi
root=$(cd "$root" && pwd)

echo "# Package map"
echo
if rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null); then
	state=clean
	if [ -n "$(git -C "$root" status --porcelain -- '*.go' 2>/dev/null)" ]; then
		state="with uncommitted changes to .go files"
	fi
	branch=$(git -C "$root" rev-parse --abbrev-ref HEAD 2>/dev/null || echo '?')
	echo "Tree: \`$root\`, $branch at $rev ($state)."
else
	echo "Tree: \`$root\` (not a git checkout)."
fi
echo

go run ./internal/tools/pkgmap "$root"
