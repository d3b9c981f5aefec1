package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/darc-dev/darc/archive"
	dcopy "github.com/darc-dev/darc/copy"
	"github.com/darc-dev/darc/reference"
)

func newInspectCommand() *cobra.Command {
	var asJSON bool
	var platform string
	cmd := &cobra.Command{
		Use:   "inspect [--json] ARCHIVE[:SELECTOR]",
		Short: "Show one image: ID, tags, config, layers with diffIDs and sizes",
		Long: `Show one image of an archive: its ID, tags, platform, manifest type, config and
layers (member, diffID, compression, digest and size as served). Without a selector the
archive must hold exactly one image. Of an image that is one platform of a manifest list
(Docker 25+ and containerd archives), the list and what the archive holds of each platform
are shown too; --platform shows another platform of it. ARCHIVE "-" is standard input:
"-:@2", "-:busybox".`,
		Example: `  darc inspect bundle.tar:@1
  darc inspect bundle.tar:busybox
  darc inspect --json bundle.tar:@sha256:0123456789ab...
  darc inspect --platform linux/arm64 bundle.tar:example.com/app:1
  zcat bundle.tar.gz | darc inspect -:@2`,
		Args: oneArchiveArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, ref, _, err := openArchiveArg(cmd, args)
			if err != nil {
				return err
			}
			defer a.Close()
			var d *archive.ImageDetails
			if platform != "" {
				p, perr := dcopy.ParsePlatform(platform)
				if perr != nil {
					return perr
				}
				d, err = a.InspectPlatform(ref.Selector(), imgspecv1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
			} else {
				d, err = a.Inspect(ref.Selector())
			}
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
			own := d.OS + "/" + d.Architecture
			if d.Variant != "" {
				own += "/" + d.Variant
			}
			fmt.Fprintf(out, "Platform:  %s\n", own)
			if l := d.List; l != nil {
				fmt.Fprintf(out, "List:      %s (%s)\n", l.Digest, l.MediaType)
				fmt.Fprintf(out, "Platforms: %s\n", platformsLabel(l))
			}
			origin := "built from the config"
			if d.OwnManifest {
				origin = "the archive's own"
			}
			fmt.Fprintf(out, "Manifest:  %s (%s)\n", d.ManifestType, origin)
			fmt.Fprintf(out, "Digest:    %s\n", digest.FromBytes(d.Manifest))
			printConfigSummary(out, d.Config)
			fmt.Fprintf(out, "Size:      %d bytes in %d layers\n", d.Size(), len(d.Layers))
			fmt.Fprintln(out, "Layers:")
			for i, l := range d.Layers {
				fmt.Fprintf(out, "  %d  %s\n", i, l.Name)
				switch {
				case l.URLs != nil:
					fmt.Fprintf(out, "     foreign:     not in the archive, fetched from %s\n", strings.Join(l.URLs, ", "))
				case l.Member != l.Name:
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
	cmd.Flags().StringVar(&platform, "platform", "", "show this platform (os/arch[/variant]) of the image's manifest list")
	registerStdinSelector(cmd.Flags())
	return cmd
}

func printInspectJSON(out interface{ Write([]byte) (int, error) }, d *archive.ImageDetails) error {
	type layer struct {
		Name        string   `json:"name"`
		Member      string   `json:"member"`
		DiffID      string   `json:"diffID"`
		Compression string   `json:"compression"`
		Digest      string   `json:"digest"`
		Size        int64    `json:"size"`
		MediaType   string   `json:"mediaType"`
		URLs        []string `json:"urls,omitempty"`
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
		Manifest     json.RawMessage `json:"manifest"` // re-indented: hash manifestDigest's bytes, not these
		Digest       string          `json:"manifestDigest"`
		Config       json.RawMessage `json:"config"`
		Size         int64           `json:"size"`
		Layers       []layer         `json:"layers"`
		List         string          `json:"index_digest,omitempty"`
		Platforms    []lsPlatform    `json:"platforms,omitempty"`
	}{Index: d.Index, ID: d.ID.String(), Tags: []string{}, Architecture: d.Architecture, OS: d.OS, Variant: d.Variant,
		ManifestType: d.ManifestType, OwnManifest: d.OwnManifest, Manifest: d.Manifest, Config: d.Config, Size: d.Size(), Layers: []layer{}}
	for _, t := range d.Tags {
		v.Tags = append(v.Tags, t.String())
	}
	v.List, v.Platforms = listJSON(d.List)
	v.Digest = digest.FromBytes(d.Manifest).String()
	for _, l := range d.Layers {
		v.Layers = append(v.Layers, layer{l.Name, l.Member, l.DiffID.String(), l.Compression, l.Digest.String(), l.Size, l.MediaType, l.URLs})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printConfigSummary prints what skopeo inspect and docker inspect show of a config: when
// it was created, and how a container of it starts (entrypoint, command, environment).
func printConfigSummary(out io.Writer, config []byte) {
	var c imgspecv1.Image
	if json.Unmarshal(config, &c) != nil {
		return // Inspect parsed it as docker does; a field of another type is not shown
	}
	if c.Created != nil {
		fmt.Fprintf(out, "Created:   %s\n", c.Created.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "Entrypoint: %s\n", orNone(quoteAll(c.Config.Entrypoint)))
	fmt.Fprintf(out, "Cmd:       %s\n", orNone(quoteAll(c.Config.Cmd)))
	if len(c.Config.Env) > 0 {
		fmt.Fprintln(out, "Env:")
		for _, e := range c.Config.Env {
			fmt.Fprintf(out, "  %s\n", e)
		}
	}
}

// quoteAll is a command line as JSON writes it: ["/bin/sh", "-c", "echo hi"].
func quoteAll(args []string) string {
	if args == nil {
		return ""
	}
	b, _ := json.Marshal(args)
	return strings.ReplaceAll(string(b), `","`, `", "`)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// parseArchiveArg accepts ARCHIVE[:SELECTOR], with or without the "docker-archive:" prefix.
func parseArchiveArg(s string) (reference.Reference, error) {
	s = strings.TrimPrefix(s, reference.Transport+":")
	return reference.ParseWithinTransportExisting(s, func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && !st.IsDir()
	})
}
