package archivetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// SeedArchives returns archives to seed fuzz targets with: the fixtures in dir (the *.tar
// files; with compressed, the compressed *.tar.* ones too), every layout of two small images
// (with compressed, also whole-archive gzip, zstd and xz), and the edge cases. Sizes are kept
// small so that mutations stay fast.
func SeedArchives(dir string, compressed bool) ([][]byte, error) {
	pattern := "*.tar"
	if compressed {
		pattern = "*.tar*"
	}
	files, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no fixtures in %s: %v", dir, err)
	}
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	base := Layer(1, 1, 40)
	images := []Image{
		{Tags: []string{"example.com/a:1", "b"}, Layers: [][]byte{base, Layer(2, 1, 30)}},
		{Layers: [][]byte{base}},
	}
	variants := []Options{
		{Layout: Docker24, GzipMembers: true},
		{Layout: ContainersImage, ManifestFirst: true, DotSlash: true},
		{Layout: Crane, ZstdLayers: true},
	}
	for _, l := range Layouts() {
		variants = append(variants, Options{Layout: l})
	}
	if compressed {
		variants = append(variants,
			Options{Layout: ContainersImage, Compression: "gzip"},
			Options{Layout: Docker25, Compression: "zstd"},
			Options{Layout: Legacy, Compression: "xz"})
	}
	for _, o := range variants {
		data, err := BuildBytes(images, o)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", o.Layout, err)
		}
		out = append(out, data)
	}
	return append(out,
		SymlinkChain(), HardlinkLayer(), DuplicateMember(),
		EscapingSymlink(), SymlinkCycle(), LongChain(3),
		ManifestDotDot(), ManifestDotDotInside(), ManifestAbsolute(),
		ExportedFS(), BZhMember(), NotATar()[:600]), nil
}
