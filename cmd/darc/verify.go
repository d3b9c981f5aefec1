package main

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

// finding is one line of verify's report.
type finding struct {
	Severity string `json:"severity"` // error, warning or note
	Image    *int   `json:"image"`    // the image's index; null for the archive as a whole
	Message  string `json:"message"`
}

func (f finding) String() string {
	if f.Image == nil {
		return fmt.Sprintf("%s: %s", f.Severity, f.Message)
	}
	return fmt.Sprintf("%s: image @%d: %s", f.Severity, *f.Image, f.Message)
}

// verifyReport is what `darc verify --json` prints.
type verifyReport struct {
	Archive  string    `json:"archive"`
	Images   int       `json:"images"`
	OK       bool      `json:"ok"` // no error: docker load would load it
	Findings []finding `json:"findings"`
}

// findings turns verify's problems, and the platforms of manifest lists the archive holds in
// part, into report lines.
func findings(probs []archive.Problem, imgs []archive.ImageInfo) []finding {
	out := []finding{}
	for _, p := range probs {
		f := finding{Severity: "error", Message: plain(p.Err.Error())}
		if p.Warning {
			f.Severity = "warning"
		}
		if p.Image >= 0 {
			f.Image = &p.Image
		}
		out = append(out, f)
	}
	for _, img := range imgs {
		if l := img.List; l != nil && slices.ContainsFunc(l.Platforms, func(p archive.PlatformInfo) bool { return !p.Complete() }) {
			index := img.Index
			out = append(out, finding{Severity: "note", Image: &index,
				Message: fmt.Sprintf("manifest list %s: %s; only complete platforms can be loaded from this archive", l.Digest, platformsLabel(l))})
		}
	}
	return out
}

func newVerifyCommand() *cobra.Command {
	var parallel int
	var quiet, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify [-q|--json] ARCHIVE[:SELECTOR]",
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

Prints one line per finding (error, warning or note) and a summary on standard error; -q
prints errors only; --json prints one JSON object instead: {"archive", "images", "ok",
"findings": [{"severity", "image", "message"}]}. Exits 0 when there is no error (warnings
allowed), 1 otherwise.

With a selector (bundle.tar.zst:@3, bundle.tar:busybox) only that image is checked, and not
the rest of the archive: of a seekable .tar.zst only that image's frames are decompressed.
A seekable .tar.zst's stored member index is checked against the tar in a whole-archive
verify.`,
		Example: `  darc verify bundle.tar
  darc verify -q bundle.tar && echo ok
  darc verify bundle.tar.zst:@3
  darc verify --json bundle.tar | jq '.findings[] | select(.severity == "error")'
  curl -s https://example.com/bundle.tar.zst | darc verify -`,
		Args: oneArchiveArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, ref, arg, err := openArchiveArg(cmd, args)
			if err != nil {
				return err
			}
			defer a.Close()
			imgs := a.Images()
			checked := len(imgs)
			var probs []archive.Problem
			if ref.Selector().Kind() == reference.KindNone {
				probs = a.Verify(cmd.Context(), parallel)
			} else if probs, err = a.VerifyImage(cmd.Context(), ref.Selector()); err != nil {
				return err
			} else {
				checked = 1
			}
			rep := verifyReport{Archive: arg, Images: checked, Findings: findings(probs, imgs)}
			bad := 0
			for _, f := range rep.Findings {
				if f.Severity == "error" {
					bad++
				}
			}
			rep.OK = bad == 0
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Findings {
					if !quiet || f.Severity == "error" {
						fmt.Fprintln(out, f)
					}
				}
			}
			if bad > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "darc: %s: %d error(s) in %d image(s)\n", args[0], bad, rep.Images)
				return errProblems
			}
			if !quiet && !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d image(s) verified\n", args[0], rep.Images)
			}
			return nil
		},
	}
	registerParallel(cmd.Flags(), &parallel, 2, "images verified at once")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print errors only")
	registerStdinSelector(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.MarkFlagsMutuallyExclusive("quiet", "json")
	return cmd
}
