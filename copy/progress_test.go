package copy

import (
	"fmt"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// stuckConsumer returns a WithProgress function that records events and, from the first
// one on, waits for release; got is closed once it holds the first event, so the test
// knows every later emit stays queued until it closes release.
func stuckConsumer() (f func(Event), events *[]Event, got, release chan struct{}) {
	got, release = make(chan struct{}), make(chan struct{})
	events = new([]Event)
	var once sync.Once
	f = func(e Event) {
		*events = append(*events, e) // only this goroutine appends; read after close
		once.Do(func() { close(got) })
		<-release
	}
	return f, events, got, release
}

// TestProgressCoalesces: while the consumer is stuck, a newer BlobProgress replaces the queued
// one of the same blob of the same image, but never one queued before a BlobDone of that blob
// (the same blob copied again, to a second destination); every other event is kept, in order.
func TestProgressCoalesces(t *testing.T) {
	f, events, got, release := stuckConsumer()
	p := newProgress(f)
	a, b := digest.FromString("a"), digest.FromString("b")
	prog := func(image int, d digest.Digest, off int64) Event {
		return Event{Kind: BlobProgress, Image: image, Source: "s", Digest: d, Offset: off, Size: 10}
	}
	p.emit(Event{Kind: ImageStarted, Image: 0, Source: "s"})
	<-got
	for _, e := range []Event{
		prog(0, a, 1),
		prog(0, b, 1),
		prog(0, a, 2), // replaces a@1
		{Kind: BlobDone, Image: 0, Source: "s", Digest: a, Offset: 10, Size: 10},
		prog(0, a, 3), // after a's BlobDone: queued anew
		prog(1, a, 5), // another image: its own slot
		prog(0, b, 7), // replaces b@1
		prog(0, a, 4), // replaces a@3
		{Kind: ImageDone, Image: 0, Source: "s"},
	} {
		p.emit(e)
	}
	close(release)
	p.close()
	p.emit(Event{Kind: ImageFailed, Image: 9}) // after close: dropped, no panic

	want := []string{"0 0 <nil>", "1 0 a 2", "1 0 b 7", "2 0 a 10", "1 0 a 4", "1 1 a 5", "3 0 <nil>"}
	name := map[digest.Digest]string{a: "a", b: "b"}
	var gotS []string
	for _, e := range *events {
		if e.Digest == "" {
			gotS = append(gotS, fmt.Sprintf("%d %d %v", e.Kind, e.Image, e.Err))
		} else {
			gotS = append(gotS, fmt.Sprintf("%d %d %s %d", e.Kind, e.Image, name[e.Digest], e.Offset))
		}
	}
	if fmt.Sprint(gotS) != fmt.Sprint(want) {
		t.Errorf("delivered (kind image blob offset):\n got %q\nwant %q", gotS, want)
	}
}

// TestProgressBounded: four goroutines emit 50,000 byte-progress events over 8 blobs each and
// 2,000 other events each while the consumer is stuck. Every emit returns; the queue holds at
// most one progress event per blob beside the others; after release every other event arrives
// once, in each goroutine's order.
func TestProgressBounded(t *testing.T) {
	const (
		emitters = 4
		blobs    = 8
		kept     = 2000 // BlobDone events per emitter
		per      = 50_000
	)
	f, events, got, release := stuckConsumer()
	p := newProgress(f)
	p.emit(Event{Kind: ImageStarted, Image: -1})
	<-got
	var wg sync.WaitGroup
	for g := range emitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				d := digest.FromString(fmt.Sprint(i % blobs))
				p.emit(Event{Kind: BlobProgress, Image: g, Digest: d, Offset: int64(i)})
				if i%(per/kept) == 0 {
					p.emit(Event{Kind: BlobDone, Image: g, Offset: int64(i / (per / kept))})
				}
			}
		}()
	}
	wg.Wait() // would hang here if emit waited for the consumer
	p.mu.Lock()
	queued := len(p.queue)
	p.mu.Unlock()
	// BlobDone events carry no digest, so they do not reopen a blob's slot: beside them at
	// most one progress event per blob and emitter.
	if limit := emitters * (kept + blobs); queued > limit {
		t.Errorf("%d events queued, want at most %d", queued, limit)
	}
	close(release)
	p.close()
	next := make([]int64, emitters)
	for _, e := range (*events)[1:] {
		if e.Kind != BlobDone {
			continue
		}
		if e.Offset != next[e.Image] {
			t.Fatalf("emitter %d: BlobDone %d arrived, want %d", e.Image, e.Offset, next[e.Image])
		}
		next[e.Image]++
	}
	for g, n := range next {
		if n != kept {
			t.Errorf("emitter %d: %d BlobDone events arrived, want %d", g, n, kept)
		}
	}
}
