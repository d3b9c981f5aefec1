package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/darc-dev/darc/archive"
)

func newVerifyCommand() *cobra.Command {
	var parallel int
	cmd := &cobra.Command{
		Use:   "verify ARCHIVE",
		Short: "Check every image of an archive, byte for byte",
		Long: `Check every image of an archive: every member manifest.json refers to exists and
stays inside the archive, each config matches its digest and lists as many layers as
manifest.json and parses as docker parses it, every layer matches its diffID (compressed
layers are decompressed to check) and any digest the archive states for it and reads as a
tar to its end, the archive's own OCI manifest (Docker 25+) agrees with the config and the
blobs it names, and every tag is a valid reference with its tag. Of an image that is one
platform of a manifest list, every other platform the archive holds completely is checked
as strictly; platforms it holds in part or not at all are noted, not errors. A config whose member name
states another digest than its content's is a warning: the image ID is the content's. Members that
nothing refers to and names that occur twice are reported as warnings.

Prints one line per finding. Exits 0 when there is no error (warnings allowed), 1 otherwise.`,
		Example: `  darc verify bundle.tar
  curl -s https://example.com/bundle.tar.zst | darc verify -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := archive.Open(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			probs := a.Verify(cmd.Context(), parallel)
			bad := 0
			for _, p := range probs {
				if !p.Warning {
					bad++
				}
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			imgs := a.Images()
			for _, img := range imgs {
				if l := img.List; l != nil && slices.ContainsFunc(l.Platforms, func(p archive.PlatformInfo) bool { return !p.Complete() }) {
					fmt.Fprintf(cmd.OutOrStdout(), "note: image @%d: manifest list %s: %s; only complete platforms can be loaded from this archive\n", img.Index, l.Digest, platformsLabel(l))
				}
			}
			n := len(imgs)
			if bad > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "darc: %s: %d error(s) in %d image(s)\n", args[0], bad, n)
				return errProblems
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d image(s) verified\n", args[0], n)
			return nil
		},
	}
	registerParallel(cmd.Flags(), &parallel, 2, "images verified at once")
	return cmd
}
