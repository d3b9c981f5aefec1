//go:build linux && !darc_loadstream

package copy_test

import "github.com/darc-dev/darc/internal/benchwork"

// Without the darc_loadstream tag copy.LoadStream is not measured (see
// bench_loadstream_test.go).

func loadStdinVariants() []string { return []string{"darc-spool", "ci"} }

func loadStreamChildren() map[string]benchwork.Variant { return nil }
