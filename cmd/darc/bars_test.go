package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/vbauerster/mpb/v8/decor"

	dcopy "github.com/darc-dev/darc/copy"
)

// TestBarsRender draws the bars of three images, one done, one failed and one skipped, as
// they are drawn on a terminal: every counter is well formed (no fmt %! errors), shows what
// was read of the blobs' sizes, and each bar ends saying how its image ended.
func TestBarsRender(t *testing.T) {
	var out bytes.Buffer
	b := newBars(&out, func(i int) string { return fmt.Sprintf("in.tar:@%d", i) })
	blob := digest.FromString("layer")
	for i := range 3 {
		b.event(dcopy.Event{Kind: dcopy.ImageStarted, Image: i})
		b.event(dcopy.Event{Kind: dcopy.BlobProgress, Image: i, Digest: blob, Offset: 1 << 20, Size: 4 << 20})
	}
	b.event(dcopy.Event{Kind: dcopy.BlobDone, Image: 0, Digest: blob, Offset: 4 << 20, Size: 4 << 20})
	b.event(dcopy.Event{Kind: dcopy.ImageDone, Image: 0})
	b.event(dcopy.Event{Kind: dcopy.ImageFailed, Image: 1, Err: errors.New("broken")})
	b.event(dcopy.Event{Kind: dcopy.ImageSkipped, Image: 2, Err: errors.New("untagged")})
	b.wait()
	text := out.String()
	if strings.Contains(text, "%!") {
		t.Errorf("a decorator's format is broken:\n%s", text)
	}
	for _, want := range []string{"in.tar:@0", "done", "in.tar:@1", "failed or skipped", "in.tar:@2"} {
		if !strings.Contains(text, want) {
			t.Errorf("the bars lack %q:\n%s", want, text)
		}
	}
}

// TestBarsTotal: a bar's total is the size of the blobs seen, not what was read plus one, so
// it starts empty and fills as they are read; the counters read "done / total".
func TestBarsTotal(t *testing.T) {
	b := newBars(io.Discard, func(i int) string { return "img" })
	b.event(dcopy.Event{Kind: dcopy.BlobProgress, Image: 0, Digest: digest.FromString("a"), Offset: 1, Size: 100})
	b.event(dcopy.Event{Kind: dcopy.BlobProgress, Image: 0, Digest: digest.FromString("b"), Offset: 50, Size: -1})
	b.mu.Lock()
	done, total := b.progressLocked(0)
	b.mu.Unlock()
	if done != 51 || total != 150 {
		t.Errorf("progress %d of %d, want 51 of 150 (100, and 50 read of a blob of unknown size)", done, total)
	}
	b.event(dcopy.Event{Kind: dcopy.ImageDone, Image: 0})
	b.wait()
	for _, tc := range []struct {
		current, total int64
		want           string
	}{
		{51, 150, "51.0 b / 150.0 b"},
		{3 << 20, 12 << 20, "3.0 MiB / 12.0 MiB"},
	} {
		got, _ := barCounters().Decor(decor.Statistics{Current: tc.current, Total: tc.total})
		if got != tc.want {
			t.Errorf("counters of %d / %d: %q, want %q", tc.current, tc.total, got, tc.want)
		}
	}
}
