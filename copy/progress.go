package copy

import (
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	ImageStarted EventKind = iota
	BlobProgress           // Offset of Size bytes of blob Digest copied
	BlobDone
	ImageDone
	ImageFailed
	ImageSkipped
)

// Event is one progress report.
type Event struct {
	Kind   EventKind
	Image  int    // the image's position in the inputs
	Source string // source reference
	Digest digest.Digest
	Offset int64
	Size   int64 // -1 when unknown
	Err    error // for ImageFailed and ImageSkipped
}

// progress hands events from the copying goroutines to the consumer of WithProgress. emit
// appends to a queue under a mutex and returns at once; one delivery goroutine takes the
// whole queue at a time and calls the consumer outside the lock, so a consumer as slow as it
// likes never holds up a copy.
//
// The queue stays bounded without dropping anything that matters: a BlobProgress replaces
// the undelivered BlobProgress of the same blob of the same image (slot), so at most one
// per blob waits between two other events of that blob. Every other event is kept, in the
// order emit was called.
type progress struct {
	f    func(Event)
	done chan struct{} // closed when the delivery goroutine has returned

	mu     sync.Mutex
	wake   *sync.Cond // signalled when queue grows or closed is set
	queue  []Event    // emitted, not yet taken by the delivery goroutine
	spare  []Event    // the last delivered batch, emptied, for reuse as queue
	slot   map[blobKey]int
	closed bool
}

// blobKey names the blob a BlobProgress event is about.
type blobKey struct {
	image  int
	source string
	digest digest.Digest
}

// newProgress starts delivering events to f from a goroutine of its own.
func newProgress(f func(Event)) *progress {
	p := &progress{f: f, done: make(chan struct{}), slot: map[blobKey]int{}}
	p.wake = sync.NewCond(&p.mu)
	go p.deliver()
	return p
}

// emit queues e and returns without waiting for the consumer. Events emitted after close
// are dropped: nothing is delivered once the call that owns p has returned.
func (p *progress) emit(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	k := blobKey{e.Image, e.Source, e.Digest}
	if e.Kind == BlobProgress {
		if i, ok := p.slot[k]; ok {
			p.queue[i] = e
			return
		}
		p.slot[k] = len(p.queue)
	} else {
		// A later progress event of this blob (the same blob copied to a second
		// destination) must come after this one, not replace an earlier one.
		delete(p.slot, k)
	}
	p.queue = append(p.queue, e)
	p.wake.Signal()
}

// deliver calls f for every queued event, in order, until close has been called and the
// queue is empty.
func (p *progress) deliver() {
	defer close(p.done)
	p.mu.Lock()
	for {
		for len(p.queue) == 0 && !p.closed {
			p.wake.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		batch := p.queue
		p.queue = p.spare
		p.spare = nil
		clear(p.slot) // the slots point into batch, which emit no longer touches
		p.mu.Unlock()
		for _, e := range batch {
			p.f(e)
		}
		clear(batch) // drop the errors and strings the events hold
		p.mu.Lock()
		p.spare = batch[:0]
	}
}

// close waits until every event emitted before it has been delivered, then stops the
// delivery goroutine. It must be called once, after the last emit of the copy.
func (p *progress) close() {
	p.mu.Lock()
	p.closed = true
	p.wake.Signal()
	p.mu.Unlock()
	<-p.done
}

// emit reports e to the WithProgress consumer, if any, without waiting for it.
func (r *run) emit(e Event) {
	if r.events != nil {
		r.events.emit(e)
	}
}

// close returns once the consumer has been given every event emitted so far.
func (r *run) close() {
	if r.events != nil {
		r.events.close()
	}
}
