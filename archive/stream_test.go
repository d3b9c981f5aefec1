package archive_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/darc-dev/darc/archive"
	"github.com/darc-dev/darc/internal/archivetest"
	"github.com/darc-dev/darc/reference"
)

// TestReadStreamMatchesOpen reads every generated layout once as a stream: each member that
// is not kept in memory is forwarded exactly once, with the bytes it has in the archive;
// the images, their layers and the manifests and configs the streamed sources serve are
// those of the same archive opened with Open.
func TestReadStreamMatchesOpen(t *testing.T) {
	for _, v := range archivetest.Variants() {
		t.Run(v.Name, func(t *testing.T) {
			data, err := archivetest.BuildBytes(archivetest.SharedImages(), v.Opts)
			if err != nil {
				t.Skipf("generator does not support this variant: %v", err)
			}
			opened, err := archive.Open(writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			defer opened.Close()
			var mu sync.Mutex
			forwarded := map[int64][]byte{}
			s, err := archive.ReadStream(context.Background(), "in.tar", bytes.NewReader(data),
				func(m archive.StreamMember, body io.Reader) {
					b, err := io.ReadAll(body)
					mu.Lock()
					defer mu.Unlock()
					if _, seen := forwarded[m.Offset]; seen || err != nil || int64(len(b)) != m.Size {
						t.Errorf("member %q forwarded again, cut short or with an error: %v", m.Name, err)
					}
					forwarded[m.Offset] = b
				})
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := s.SelectEach(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != len(opened.Images()) {
				t.Fatalf("%d images streamed, %d opened", len(imgs), len(opened.Images()))
			}
			for i, img := range imgs {
				checkStreamedImage(t, s, img, opened, i, forwarded)
			}
		})
	}
}

// checkStreamedImage compares image i of a streamed archive with the same archive opened.
func checkStreamedImage(t *testing.T, s *archive.StreamedArchive, img archive.StreamedImage, opened *archive.ReadableArchive, i int, forwarded map[int64][]byte) {
	t.Helper()
	want, err := opened.Inspect(mustIndex(t, i))
	if err != nil {
		t.Fatal(err)
	}
	if img.Index != i || img.ID != want.ID {
		t.Errorf("@%d: streamed image @%d %s, opened %s", i, img.Index, img.ID, want.ID)
	}
	content, err := img.Verify()
	if err != nil {
		t.Fatalf("@%d: %v", i, err)
	}
	if len(content.Layers) != len(want.Layers) || content.ConfigSize != int64(len(want.Config)) {
		t.Fatalf("@%d: %d layers and a config of %d bytes, want %d and %d", i, len(content.Layers), content.ConfigSize, len(want.Layers), len(want.Config))
	}
	for j, l := range content.Layers {
		body, ok := forwarded[l.Member.Offset]
		if !ok {
			body, ok = s.Kept(l.Member)
		}
		if !ok || int64(len(body)) != l.Member.Size {
			t.Errorf("@%d layer %d: member %q neither forwarded nor kept", i, j, l.Member.Name)
		}
		if l.Digest != want.Layers[j].Digest {
			t.Errorf("@%d layer %d: digest %s, opened %s", i, j, l.Digest, want.Layers[j].Digest)
		}
	}
	ref, err := img.Reference()
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, _, err := src.GetManifest(context.Background(), nil)
	if err != nil || !bytes.Equal(m, want.Manifest) {
		t.Errorf("@%d: streamed source serves another manifest (%v)", i, err)
	}
	rc, _, err := src.GetBlob(context.Background(), blobInfo(img.ID, -1), nil)
	if err != nil {
		t.Fatal(err)
	}
	config, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(config, want.Config) {
		t.Errorf("@%d: streamed source serves another config", i)
	}
	if len(content.Layers) > 0 {
		if _, _, err := src.GetBlob(context.Background(), blobInfo(content.Layers[0].Digest, -1), nil); !errors.Is(err, archive.ErrMemberNotFound) {
			t.Errorf("@%d: a layer of a streamed source: %v, want ErrMemberNotFound", i, err)
		}
	}
}

// TestReadStreamDamagedLayer: a layer whose bytes do not match its digest passes the stream
// (it was forwarded already) and fails Verify with ErrDigestMismatch.
func TestReadStreamDamagedLayer(t *testing.T) {
	_, data := damagedLayer(t)
	s, err := archive.ReadStream(context.Background(), "in.tar", bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	sel, _ := reference.IndexSelector(2)
	imgs, err := s.SelectEach([]reference.Selector{sel})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imgs[0].Verify(); !errors.Is(err, archive.ErrDigestMismatch) {
		t.Errorf("Verify of the damaged image: %v, want ErrDigestMismatch", err)
	}
}

// TestReadStreamLimits: the memory for metadata is bounded (ErrTooLarge past it) and must be
// at least one byte; a streamed image is a source, never a destination.
func TestReadStreamLimits(t *testing.T) {
	data, err := archivetest.BuildBytes(archivetest.SharedImages(), archivetest.Options{Layout: archivetest.ContainersImage})
	if err != nil {
		t.Fatal(err)
	}
	read := func(opts ...archive.StreamOption) (*archive.StreamedArchive, error) {
		return archive.ReadStream(context.Background(), "in.tar", bytes.NewReader(data), nil, opts...)
	}
	if _, err := read(archive.WithMaxStreamMemory(64)); !errors.Is(err, archive.ErrTooLarge) {
		t.Errorf("64 bytes for metadata: %v, want ErrTooLarge", err)
	}
	if _, err := read(archive.WithMaxStreamMemory(0)); err == nil || !strings.Contains(err.Error(), "WithMaxStreamMemory(0)") {
		t.Errorf("no memory for metadata: %v, want an error naming the option", err)
	}
	s, err := read()
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := s.SelectEach([]reference.Selector{mustIndex(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := imgs[0].Reference()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.NewImageDestination(context.Background(), nil); err == nil {
		t.Error("a streamed image accepted being written to")
	}
	img, err := ref.NewImage(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if got := img.ConfigInfo().Digest; got != imgs[0].ID {
		t.Errorf("the streamed image's config is %s, want %s", got, imgs[0].ID)
	}
}
