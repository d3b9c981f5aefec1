package tarfile

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/darc-dev/darc/internal/archivetest"
)

// forwardLog records what Forward received: the sha256 of each body, by member offset.
type forwardLog struct {
	mu     sync.Mutex
	digest map[int64]digest.Digest
	comp   map[int64]Compression
}

func (l *forwardLog) forward(m Member, c Compression, body io.Reader) {
	h := sha256.New()
	_, _ = io.Copy(h, body)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.digest[m.Offset] = digest.NewDigest(digest.SHA256, h)
	l.comp[m.Offset] = c
}

func readStream(t *testing.T, data []byte, limits Limits) (*Reader, *forwardLog, error) {
	t.Helper()
	log := &forwardLog{digest: map[int64]digest.Digest{}, comp: map[int64]Compression{}}
	r, err := ReadStream(context.Background(), "test", bytes.NewReader(data), StreamOptions{Limits: limits, Forward: log.forward})
	return r, log, err
}

// openRandom opens data the random-access way, spooling it when compressed.
func openRandom(t *testing.T, data []byte) (*Reader, error) {
	t.Helper()
	return OpenStream("test", bytes.NewReader(data), OpenOptions{TempDir: t.TempDir()})
}

// TestReadStreamMatchesReader reads every layout both ways: the images, their tags, IDs,
// layers, manifests and blob digests must be the same, every streamed layer must verify, and
// Forward must have seen exactly the bytes whose facts were recorded.
func TestReadStreamMatchesReader(t *testing.T) {
	for _, v := range archivetest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			data, err := archivetest.BuildBytes(archivetest.SharedImages(), v.Opts)
			if err != nil {
				t.Skipf("generator does not support this variant: %v", err)
			}
			want, err := openRandom(t, data)
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			got, log, err := readStream(t, data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			compareReaders(t, got, want)
			for _, img := range got.Images() {
				if err := img.VerifyStreamed(); err != nil {
					t.Errorf("%s: VerifyStreamed: %v", img.Name(), err)
				}
			}
			forwarded := 0
			for _, m := range got.Index().Members() {
				f, ok := got.StreamFacts(m)
				if m.Type != tar.TypeReg {
					if ok {
						t.Errorf("member %q (type %q) has facts", m.Name, m.Type)
					}
					continue
				}
				if !ok {
					t.Fatalf("member %q has no facts", m.Name)
				}
				if f.Kept {
					data, ok := got.KeptData(m)
					if !ok || digest.FromBytes(data) != f.Digest || int64(len(data)) != m.Size {
						t.Errorf("member %q: kept data does not match its facts", m.Name)
					}
					continue
				}
				forwarded++
				if log.digest[m.Offset] != f.Digest || log.comp[m.Offset] != f.Compression {
					t.Errorf("member %q: forwarded %s (%s), facts say %s (%s)", m.Name, log.digest[m.Offset], log.comp[m.Offset], f.Digest, f.Compression)
				}
			}
			if forwarded == 0 {
				t.Error("no member was forwarded")
			}
		})
	}
}

// compareReaders checks that a streamed Reader describes the same images as a random-access one.
func compareReaders(t *testing.T, got, want *Reader) {
	t.Helper()
	if !slices.Equal(got.Index().Members(), want.Index().Members()) {
		t.Errorf("members differ:\n got %+v\nwant %+v", got.Index().Members(), want.Index().Members())
	}
	if !slices.Equal(got.Index().Duplicates(), want.Index().Duplicates()) || !slices.Equal(got.Index().Insecure(), want.Index().Insecure()) {
		t.Errorf("duplicates %q insecure %q, want %q %q", got.Index().Duplicates(), got.Index().Insecure(), want.Index().Duplicates(), want.Index().Insecure())
	}
	if got.Format() != want.Format() {
		t.Errorf("format %q, want %q", got.Format(), want.Format())
	}
	if len(got.Images()) != len(want.Images()) {
		t.Fatalf("%d images, want %d", len(got.Images()), len(want.Images()))
	}
	for i, w := range want.Images() {
		g := got.Images()[i]
		if !slices.Equal(g.RepoTags, w.RepoTags) || g.ID != w.ID || !slices.Equal(g.LayerNames, w.LayerNames) {
			t.Errorf("@%d: tags %q id %s layers %q; want %q %s %q", i, g.RepoTags, g.ID, g.LayerNames, w.RepoTags, w.ID, w.LayerNames)
		}
		if len(g.Problems) != len(w.Problems) {
			t.Errorf("@%d: problems %v, want %v", i, g.Problems, w.Problems)
		}
		gr, gerr := g.Resolve()
		wr, werr := w.Resolve()
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("@%d: Resolve error %v, want %v", i, gerr, werr)
		}
		if werr != nil {
			continue
		}
		if !bytes.Equal(gr.Manifest, wr.Manifest) || gr.ManifestType != wr.ManifestType || gr.OwnManifest != wr.OwnManifest {
			t.Errorf("@%d: manifest differs:\n got %s\nwant %s", i, gr.Manifest, wr.Manifest)
		}
		for j, wl := range wr.Layers {
			gl := gr.Layers[j]
			if gl.Digest != wl.Digest || gl.Size != wl.Size || gl.Compression != wl.Compression || gl.Member.Name != wl.Member.Name {
				t.Errorf("@%d layer %d: %+v, want %+v", i, j, gl, wl)
			}
		}
	}
}

// TestReadStreamEdgeCases: the hand-made edge archives read the same streamed: links before
// their targets, hardlinks, a duplicate name (the last wins), a "BZh" member; and hostile
// ones fail the same way.
func TestReadStreamEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"symlink chain before target", archivetest.SymlinkChain()},
		{"hardlink", archivetest.HardlinkLayer()},
		{"duplicate member, last wins", archivetest.DuplicateMember()},
		{"BZh member", archivetest.BZhMember()},
		{"escaping symlink", archivetest.EscapingSymlink()},
		{"symlink cycle", archivetest.SymlinkCycle()},
		{"long chain", archivetest.LongChain(20)},
		{"manifest dot-dot", archivetest.ManifestDotDot()},
		{"manifest dot-dot inside", archivetest.ManifestDotDotInside()},
		{"manifest absolute", archivetest.ManifestAbsolute()},
		{"not a tar", archivetest.NotATar()},
		{"exported filesystem", archivetest.ExportedFS()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, werr := openRandom(t, tc.data)
			got, _, gerr := readStream(t, tc.data, Limits{})
			if werr != nil || gerr != nil {
				if werr == nil || gerr == nil || !sameSentinel(gerr, werr) {
					t.Fatalf("stream error %v, random-access error %v", gerr, werr)
				}
				return
			}
			defer want.Close()
			compareReaders(t, got, want)
			for i, img := range got.Images() {
				_, rerr := want.Images()[i].Resolve()
				if err := img.VerifyStreamed(); (err == nil) != (rerr == nil) {
					t.Errorf("%s: VerifyStreamed %v, random-access Resolve %v", img.Name(), err, rerr)
				}
			}
		})
	}
}

func sameSentinel(a, b error) bool {
	for _, s := range []error{ErrNotDockerArchive, ErrTooLarge, ErrInsecurePath, ErrBadLink, ErrMemberNotFound, ErrInvalidManifest, ErrDigestMismatch} {
		if errors.Is(b, s) {
			return errors.Is(a, s)
		}
	}
	return false
}

// TestReadStreamCorruptLayer: a layer whose bytes do not match the config's diffID fails
// VerifyStreamed for the image using it, with ErrDigestMismatch, and only for that image.
func TestReadStreamCorruptLayer(t *testing.T) {
	good := archivetest.Layer(7, 2, 3000)
	bad := archivetest.Layer(8, 2, 3000)
	data, err := archivetest.BuildBytes([]archivetest.Image{
		{Tags: []string{"example.com/good:1"}, Layers: [][]byte{good}},
		{Tags: []string{"example.com/bad:1"}, Layers: [][]byte{bad}},
	}, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the second layer's file content (after its 512-byte tar header
	// inside the layer, which keeps the member a valid tar).
	i := bytes.Index(data, bad[512:600])
	if i < 0 {
		t.Fatal("layer not found in archive")
	}
	data[i+10] ^= 0xff
	r, _, err := readStream(t, data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Images()[0].VerifyStreamed(); err != nil {
		t.Errorf("good image: %v", err)
	}
	if err := r.Images()[1].VerifyStreamed(); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("bad image: got %v, want ErrDigestMismatch", err)
	}
}

// TestReadStreamLimits: the memory budget and the member limit are enforced while streaming.
func TestReadStreamLimits(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := readStream(t, data, Limits{MaxStreamMemory: 2000}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("memory budget: got %v, want ErrTooLarge", err)
	}
	if _, _, err := readStream(t, data, Limits{MaxMembers: 5}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("member limit: got %v, want ErrTooLarge", err)
	}
	// manifest.json bigger than the manifest limit is not kept, and reading it says why.
	if _, _, err := readStream(t, data, Limits{MaxManifestSize: 500}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("manifest limit: got %v, want ErrTooLarge", err)
	}
}

// TestReadStreamTruncated cuts an archive at every 512-byte boundary, as the stdlib's
// archive/tar tests do: a cut inside a member fails, a cut at a member boundary is a shorter
// valid tar (archive/tar does not require the end-of-archive blocks), and nothing hangs or
// panics.
func TestReadStreamTruncated(t *testing.T) {
	data, err := archivetest.BuildBytes([]archivetest.Image{archivetest.EdgeImage()}, archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	full, _, err := readStream(t, data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	boundary := map[int64]bool{}
	var end int64
	for _, m := range full.Index().Members() {
		boundary[m.HeaderOffset] = true
		end = (m.Offset + m.Size + blockSize - 1) / blockSize * blockSize
	}
	for cut := 0; cut < len(data); cut += blockSize {
		_, _, err := readStream(t, data[:cut], Limits{})
		if int64(cut) < end && !boundary[int64(cut)] && err == nil {
			t.Errorf("cut at %d of %d (inside a member): no error", cut, len(data))
		}
	}
}

// TestReadStreamTrailer: a compressed archive whose trailer is damaged fails, because the
// input is read to its end.
func TestReadStreamTrailer(t *testing.T) {
	data, err := archivetest.BuildBytes([]archivetest.Image{archivetest.EdgeImage()}, archivetest.Options{Layout: archivetest.ContainersImage, Compression: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-6] ^= 0xff // inside the CRC-32
	if _, _, err := readStream(t, data, Limits{}); err == nil {
		t.Error("damaged gzip trailer: no error")
	}
}

// TestReadStreamForwardStopsEarly: a Forward that gives up does not stall the stream, and
// the facts still cover the whole member.
func TestReadStreamForwardStopsEarly(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.Crane})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadStream(context.Background(), "test", bytes.NewReader(data), StreamOptions{
		Forward: func(m Member, c Compression, body io.Reader) { _, _ = body.Read(make([]byte, 10)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range r.Images() {
		if err := img.VerifyStreamed(); err != nil {
			t.Errorf("%s: %v", img.Name(), err)
		}
	}
}

func TestChunkPipe(t *testing.T) {
	p := newChunkPipe()
	for round := 0; round < 3; round++ {
		p.reset()
		want := bytes.Repeat([]byte(fmt.Sprint(round)), 3*chunkSize+17)
		go func() {
			for b := want; len(b) > 0; {
				n := min(len(b), 100_000)
				p.write(b[:n])
				b = b[n:]
			}
			p.closeWrite(nil)
		}()
		got, err := io.ReadAll(p)
		p.stopReading()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: read %d bytes, %v; want %d", round, len(got), err, len(want))
		}
	}
}
