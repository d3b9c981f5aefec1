package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	distref "github.com/distribution/reference"
	"github.com/spf13/cobra"

	"github.com/darc-dev/darc/archive"
)

// lsEntry is one line of `darc ls --json`.
type lsEntry struct {
	// Archive is the archive's path, given when ls lists several archives.
	Archive string   `json:"archive,omitempty"`
	Index   int      `json:"index"`
	Tags    []string `json:"tags"`
	// InvalidTags are RepoTags entries that name no image (no tag, a digest, an invalid
	// name): docker load refuses them, so they are not listed as tags, nor given ":latest".
	InvalidTags []string `json:"invalid_tags,omitempty"`
	ID          string   `json:"id"`
	Layers      int      `json:"layers"`
	Size        int64    `json:"size"`
	// List and Platforms are set for an image that is one platform of a manifest list (the
	// image itself is the one manifest.json names): the list's digest, and each platform.
	List      string       `json:"index_digest,omitempty"`
	Platforms []lsPlatform `json:"platforms,omitempty"`
}

// lsPlatform is one platform of an image's manifest list.
type lsPlatform struct {
	Platform string `json:"platform"`
	Manifest string `json:"manifest"`
	Complete bool   `json:"complete"`
	// State is "complete", "manifest only" (the config or a layer is not in the archive) or
	// "absent" (not even the manifest is).
	State string `json:"state"`
}

func newLsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json] ARCHIVE...",
		Short: "List the images of archives in archive order",
		Long: `List the images of an archive in archive order: index (for ARCHIVE:@INDEX),
image ID (the digest of the config's content, as docker shows it after loading), tags,
layer count and the size of the layers as stored. An image that is one platform of a
manifest list (Docker 25+ and containerd archives) is listed as the platform manifest.json
names, with a PLATFORMS column saying what the archive holds of each platform: complete,
"manifest only" (the config or a layer is missing) or "absent"; --json adds the list's
digest ("index_digest") and "platforms". RepoTags entries that docker load would
refuse (a name without a tag, a digest) are shown as invalid, not as tags.

Several archives are listed one after the other, each under a line with its path, as ls
lists several directories; with --json, in one array whose objects name their "archive".
An archive that cannot be read is reported and the others are still listed; the exit
status is then 1.`,
		Example: `  darc ls bundle.tar
  darc ls --json bundle.tar.zst
  darc ls base.tar apps.tar
  zcat bundle.tar.gz | darc ls -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// tabwriter writes each cell on its own: one write(2) per cell to a terminal or pipe
			// without a buffer, which costs more than reading the archive when it is large.
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			several := len(args) > 1
			all := []lsEntry{}
			failed, listed := false, false
			for _, path := range args {
				imgs, entries, err := lsArchive(cmd.ErrOrStderr(), path)
				if err != nil && !several {
					return err
				}
				if err != nil {
					// As ls does with a directory it cannot read: say so and go on.
					if ferr := out.Flush(); ferr != nil {
						return ferr
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "darc:", err)
					failed = true
					continue
				}
				if asJSON {
					for k := range entries {
						if several {
							entries[k].Archive = path
						}
					}
					all = append(all, entries...)
					continue
				}
				if several {
					if listed {
						fmt.Fprintln(out)
					}
					fmt.Fprintf(out, "%s:\n", path)
				}
				listed = true
				if err := printLsTable(out, imgs, entries); err != nil {
					return err
				}
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(all); err != nil {
					return err
				}
			}
			if err := out.Flush(); err != nil {
				return err
			}
			if failed {
				return errProblems
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, one object per image")
	return cmd
}

// lsArchive opens the archive at path and returns its images and their ls entries.
func lsArchive(stderr io.Writer, path string) ([]archive.ImageInfo, []lsEntry, error) {
	a, err := openArchive(stderr, path)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	imgs := a.Images()
	entries := make([]lsEntry, len(imgs))
	for i, img := range imgs {
		e := lsEntry{Index: img.Index, Tags: []string{}, InvalidTags: img.BadTags, ID: img.ID.String(), Layers: len(img.Layers), Size: img.Size()}
		for _, t := range img.Tags {
			e.Tags = append(e.Tags, t.String())
		}
		e.List, e.Platforms = listJSON(img.List)
		entries[i] = e
	}
	return imgs, entries, nil
}

// printLsTable prints one archive's images as a table.
func printLsTable(out io.Writer, imgs []archive.ImageInfo, entries []lsEntry) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	// A PLATFORMS column only where some image is one platform of a manifest list.
	lists := slices.ContainsFunc(imgs, func(i archive.ImageInfo) bool { return i.List != nil })
	header := "INDEX\tIMAGE ID\tLAYERS\tSIZE\tTAGS"
	if lists {
		header += "\tPLATFORMS"
	}
	fmt.Fprintln(tw, header)
	for i, e := range entries {
		tags := make([]string, len(imgs[i].Tags))
		for j, t := range imgs[i].Tags {
			tags[j] = distref.FamiliarString(t)
		}
		label := strings.Join(tags, ", ")
		if label == "" {
			label = "<none>"
		}
		for _, b := range e.InvalidTags {
			label += fmt.Sprintf(" (invalid: %q)", b)
		}
		fmt.Fprintf(tw, "@%d\t%s\t%d\t%s\t%s", e.Index, shortID(e.ID), e.Layers, humanSize(e.Size), label)
		if lists {
			fmt.Fprintf(tw, "\t%s", platformsLabel(imgs[i].List))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// listJSON is a manifest list's digest and platforms as ls and inspect print them in JSON;
// empty for an image that is one manifest.
func listJSON(l *archive.ListInfo) (string, []lsPlatform) {
	if l == nil {
		return "", nil
	}
	ps := make([]lsPlatform, len(l.Platforms))
	for i, p := range l.Platforms {
		ps[i] = lsPlatform{Platform: p.Platform, Manifest: p.Manifest.String(), Complete: p.Complete(), State: p.State}
	}
	return l.Digest.String(), ps
}

// platformsLabel is "linux/amd64, linux/arm64/v8 (absent)", or "-" for an image that is
// one manifest.
func platformsLabel(l *archive.ListInfo) string {
	if l == nil {
		return "-"
	}
	parts := make([]string, len(l.Platforms))
	for i, p := range l.Platforms {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	if id == "" {
		return "<unknown>"
	}
	return id
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
