package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/reference"
)

func newInspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [--json] ARCHIVE[:SELECTOR]",
		Short: "Show one image: ID, tags, config, layers with diffIDs and sizes",
		Long: `Show one image of an archive: its ID, tags, platform, manifest type, config and
layers (member, diffID, compression, digest and size as served). Without a selector the
archive must hold exactly one image.`,
		Example: `  darc inspect bundle.tar:@1
  darc inspect bundle.tar:busybox
  darc inspect --json bundle.tar:@sha256:0123456789ab...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := parseArchiveArg(args[0])
			if err != nil {
				return err
			}
			a, err := archive.Open(ref.Path())
			if err != nil {
				return err
			}
			defer a.Close()
			d, err := a.Inspect(ref.Selector())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printInspectJSON(out, d)
			}
			fmt.Fprintf(out, "Index:     @%d\n", d.Index)
			fmt.Fprintf(out, "ID:        %s\n", d.ID)
			tags := make([]string, len(d.Tags))
			for i, t := range d.Tags {
				tags[i] = t.String()
			}
			fmt.Fprintf(out, "Tags:      %s\n", orNone(strings.Join(tags, ", ")))
			platform := d.OS + "/" + d.Architecture
			if d.Variant != "" {
				platform += "/" + d.Variant
			}
			fmt.Fprintf(out, "Platform:  %s\n", platform)
			own := "built from the config"
			if d.OwnManifest {
				own = "the archive's own"
			}
			fmt.Fprintf(out, "Manifest:  %s (%s)\n", d.ManifestType, own)
			fmt.Fprintf(out, "Size:      %d bytes in %d layers\n", d.Size(), len(d.Layers))
			fmt.Fprintln(out, "Layers:")
			for i, l := range d.Layers {
				fmt.Fprintf(out, "  %d  %s\n", i, l.Name)
				if l.Member != l.Name {
					fmt.Fprintf(out, "     member:      %s\n", l.Member)
				}
				fmt.Fprintf(out, "     diffID:      %s\n", l.DiffID)
				fmt.Fprintf(out, "     compression: %s\n", l.Compression)
				fmt.Fprintf(out, "     digest:      %s\n", l.Digest)
				fmt.Fprintf(out, "     size:        %d\n", l.Size)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printInspectJSON(out interface{ Write([]byte) (int, error) }, d *archive.ImageDetails) error {
	type layer struct {
		Name        string `json:"name"`
		Member      string `json:"member"`
		DiffID      string `json:"diffID"`
		Compression string `json:"compression"`
		Digest      string `json:"digest"`
		Size        int64  `json:"size"`
		MediaType   string `json:"mediaType"`
	}
	v := struct {
		Index        int             `json:"index"`
		ID           string          `json:"id"`
		Tags         []string        `json:"tags"`
		Architecture string          `json:"architecture"`
		OS           string          `json:"os"`
		Variant      string          `json:"variant,omitempty"`
		ManifestType string          `json:"manifestType"`
		OwnManifest  bool            `json:"ownManifest"`
		Manifest     json.RawMessage `json:"manifest"`
		Config       json.RawMessage `json:"config"`
		Size         int64           `json:"size"`
		Layers       []layer         `json:"layers"`
	}{Index: d.Index, ID: d.ID.String(), Tags: []string{}, Architecture: d.Architecture, OS: d.OS, Variant: d.Variant,
		ManifestType: d.ManifestType, OwnManifest: d.OwnManifest, Manifest: d.Manifest, Config: d.Config, Size: d.Size(), Layers: []layer{}}
	for _, t := range d.Tags {
		v.Tags = append(v.Tags, t.String())
	}
	for _, l := range d.Layers {
		v.Layers = append(v.Layers, layer{l.Name, l.Member, l.DiffID.String(), l.Compression, l.Digest.String(), l.Size, l.MediaType})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// parseArchiveArg accepts ARCHIVE[:SELECTOR], with or without the "docker-archive:" prefix.
func parseArchiveArg(s string) (reference.Reference, error) {
	if strings.HasPrefix(s, reference.Transport+":") {
		return reference.Parse(s)
	}
	return reference.ParseWithinTransport(s)
}
