// Command darc lists, inspects and verifies multi-image docker-archive tarballs (the format
// of `docker save` and `podman save -m`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// errProblems marks a failure already reported line by line on stdout/stderr.
var errProblems = errors.New("problems found")

// softMemoryLimit keeps the garbage collector from letting the heap grow far past what is
// live: containers/image allocates a compressor per layer, and without a limit the heap of a
// long load grows to several times its live size. GOMEMLIMIT, when set, wins.
const softMemoryLimit = 128 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	if err != nil {
		switch {
		case errors.Is(err, errProblems):
		case ctx.Err() != nil:
			fmt.Fprintln(os.Stderr, "darc: interrupted; nothing was left at the output")
		default:
			fmt.Fprintln(os.Stderr, "darc:", err)
		}
		stop()
		os.Exit(1)
	}
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "darc",
		Short: "Read, verify, save, load and copy multi-image docker-archive tarballs",
		Long: `darc works with docker-archive tarballs: the files written by "docker save",
"podman save -m", "skopeo copy ... docker-archive:" and "crane pull".

An archive is named by its path ("-" for standard input). One image in it is chosen
with a selector after a colon, as in containers/image's docker-archive transport:

  ARCHIVE:NAME[:TAG]   the image with that tag (busybox = docker.io/library/busybox:latest)
  ARCHIVE:@INDEX       the image at that position, from 0 (see "darc ls")
  ARCHIVE:@ID          the image whose ID (config digest) is sha256:<hex> or starts with
                       at least 12 hex digits`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newLsCommand(), newInspectCommand(), newVerifyCommand(), newCpCommand(), newSaveCommand(), newLoadCommand(), newMergeCommand())
	return root
}
