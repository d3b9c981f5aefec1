package testtools

import (
	"os"
	"slices"
	"testing"
)

// DirNames returns the names in dir, sorted: what tests that promise "nothing left
// behind" compare.
func DirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}
