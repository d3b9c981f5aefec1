//go:build linux && darc_loadstream

package copy_test

import (
	"context"
	"os"
	"path/filepath"

	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/internal/benchwork"
)

// copy.LoadStream reads an archive once, front to back, from a stream (issue 4, point 2).
// Until it is merged, this file builds only with -tags darc_loadstream.

func loadStdinVariants() []string { return []string{"darc-spool", "darc-stream", "ci"} }

func loadStreamChildren() map[string]benchwork.Variant {
	return map[string]benchwork.Variant{"loadzst/darc-stream": loadStreamDarc}
}

// loadStreamDarc is copy.LoadStream of every image on standard input into oci:OUT/layout.
func loadStreamDarc(ctx context.Context, env *benchwork.Env) (benchwork.Outcome, error) {
	layout := filepath.Join(env.OutDir, "layout")
	dest, err := dcopy.ParseDestination("oci:" + layout)
	if err != nil {
		return benchwork.Outcome{}, err
	}
	if _, err := dcopy.LoadStream(ctx, os.Stdin, dest, nil, dcopy.WithSystemContext(env.Sys)); err != nil {
		return benchwork.Outcome{}, err
	}
	return benchwork.Outcome{Outputs: []string{layout}, Spooled: -1, Check: func() error { return checkLayout(env, layout) }}, nil
}
