//go:build race

package archive_test

// raceEnabled: the race detector multiplies time and memory; TestLargeInputs skips under it.
const raceEnabled = true
