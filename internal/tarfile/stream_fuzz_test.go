package tarfile

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/darc-dev/darc/internal/archivetest"
)

// FuzzReadStream checks that reading an input front to back agrees with reading it at
// random: both refuse it, or both list the same images, resolve the same ones, and give those
// the same manifests. Neither may panic or hang.
func FuzzReadStream(f *testing.F) {
	for _, seed := range [][]byte{
		archivetest.SymlinkChain(), archivetest.HardlinkLayer(), archivetest.DuplicateMember(),
		archivetest.BZhMember(), archivetest.EscapingSymlink(), archivetest.ManifestDotDot(),
	} {
		f.Add(seed)
	}
	for _, l := range archivetest.Layouts() {
		data, err := archivetest.BuildBytes([]archivetest.Image{archivetest.EdgeImage()}, archivetest.Options{Layout: l})
		if err == nil {
			f.Add(data)
		}
	}
	limits := Limits{MaxMembers: 1000, MaxManifestSize: 1 << 20, MaxConfigSize: 1 << 20, MaxSpoolSize: 64 << 20, MaxStreamMemory: 8 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := OpenStream("fuzz", bytes.NewReader(data), OpenOptions{Limits: limits, TempDir: t.TempDir()})
		got, gerr := ReadStream(context.Background(), "fuzz", bytes.NewReader(data), StreamOptions{Limits: limits})
		if werr != nil || gerr != nil {
			if (werr == nil) != (gerr == nil) && !errors.Is(gerr, ErrTooLarge) {
				t.Fatalf("stream error %v, random-access error %v", gerr, werr)
			}
			return
		}
		defer want.Close()
		if len(got.Images()) != len(want.Images()) {
			t.Fatalf("%d images, random access %d", len(got.Images()), len(want.Images()))
		}
		for i, w := range want.Images() {
			g := got.Images()[i]
			if g.ID != w.ID || len(g.Tags) != len(w.Tags) {
				t.Fatalf("@%d: id %s tags %v; random access %s %v", i, g.ID, g.Tags, w.ID, w.Tags)
			}
			gr, gerr := g.Resolve()
			wr, werr := w.Resolve()
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("@%d: Resolve %v; random access %v", i, gerr, werr)
			}
			if gerr == nil && !bytes.Equal(gr.Manifest, wr.Manifest) {
				t.Fatalf("@%d: manifest differs", i)
			}
			_ = g.VerifyStreamed()
		}
	})
}
