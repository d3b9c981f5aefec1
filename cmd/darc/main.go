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
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
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
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-signals
		// A second signal kills at once: the default action is back.
		signal.Stop(signals)
		cancel(interrupted{s.(syscall.Signal)})
	}()
	err := newRootCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	os.Exit(exitStatus(context.Cause(ctx), err, os.Stderr))
}

// interrupted is the cause of the command's context once a signal arrived.
type interrupted struct{ sig syscall.Signal }

func (i interrupted) Error() string { return "interrupted by " + unix.SignalName(i.sig) }

// interruptReport is what a command that writes somewhere returns once interrupted: what it
// had done by then, and what not.
type interruptReport string

func (r interruptReport) Error() string { return string(r) }

// exitStatus reports err on stderr and returns the exit status: 0 on success, 1 on failure,
// and after a signal 128 plus its number (130 for SIGINT, 143 for SIGTERM), as a shell
// reports a command killed by it, whether or not the command got to finish.
func exitStatus(cause, err error, stderr io.Writer) int {
	var sig interrupted
	if errors.As(cause, &sig) {
		var report interruptReport
		if errors.As(err, &report) {
			fmt.Fprintf(stderr, "darc: %v; %s\n", sig, report)
		} else {
			fmt.Fprintf(stderr, "darc: %v\n", sig)
		}
		return 128 + int(sig.sig)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errProblems):
	default:
		reportError(stderr, err)
	}
	return 1
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
                       at least 12 hex digits

Standard input with a selector is "-:SELECTOR": cat bundle.tar | darc inspect -:@2`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// --version prints what `darc version` does.
	root.Version = versionText()
	root.SetVersionTemplate("{{.Version}}")
	root.Flags().BoolP("version", "v", false, "print the versions of darc, containers/image and Go")
	root.AddCommand(newLsCommand(), newInspectCommand(), newVerifyCommand(), newCpCommand(), newSaveCommand(), newLoadCommand(), newMergeCommand(), newServeCommand(), newVersionCommand())
	return root
}
