package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/darc-dev/darc/internal/tarfile"
)

// MinSplitSize is the smallest part size WithSplit takes: a part must hold at least one
// compressed frame (up to about 4.5 MiB) and its seek table.
const MinSplitSize = 8 << 20

// WithSplit cuts the archive Create writes into parts PATH.000, PATH.001, … of at most size
// bytes each (at least MinSplitSize), for media or uploads with a size limit. It needs
// CompressZstd: each part is a seekable zstd stream of its own, ending where a frame would no
// longer fit (frames start where large members start, so a part mostly ends at a member
// boundary; a member larger than what is left of a part continues in the next). The parts
// concatenated are the plain .tar.zst (`cat PATH.* | zstd -d` is the tar), and Open reads
// them in place given PATH.000. Commit renames the parts into place one by one; an existing
// PATH.000 is refused with ErrExists unless WithOverwrite, which also removes parts of the
// old set beyond the new one's. Replacing a set is therefore not atomic as replacing one
// file is: a rename failing halfway leaves neither set whole.
func WithSplit(size int64) CreateOption {
	return func(o *createOptions) { o.splitSize = size }
}

// checkSplit refuses a split that Create cannot write.
func checkSplit(o createOptions, forWriter bool) error {
	switch {
	case o.splitSize == 0:
		return nil
	case forWriter:
		return errors.New("archive: WithSplit applies only to Create with a path, not to NewWriter or standard output")
	case o.compression != CompressZstd:
		return fmt.Errorf("archive: WithSplit needs %q compression", CompressZstd)
	case o.splitSize < MinSplitSize:
		return fmt.Errorf("archive: split size %d is less than the minimum, %d bytes (8 MiB)", o.splitSize, MinSplitSize)
	}
	return nil
}

// createSplit is Create with WithSplit.
func createSplit(path string, o createOptions) (*WritableArchive, error) {
	parts, err := newPartOutput(path, o.overwrite)
	if err != nil {
		return nil, err
	}
	a, err := newWritable(path, path, nil, parts, o)
	if err != nil {
		_ = parts.discard()
		return nil, err
	}
	a.parts = parts
	return a, nil
}

// partOutput writes a split archive's parts to temp files beside path; place renames them
// to path.000, path.001, ….
type partOutput struct {
	path  string
	files []*os.File
	cur   *writebackFile
}

// newPartOutput checks that no split archive is at path (unless overwrite) and creates the
// first part's temp file.
func newPartOutput(path string, overwrite bool) (*partOutput, error) {
	if _, err := os.Stat(tarfile.PartName(path, 0)); err == nil && !overwrite {
		return nil, fmt.Errorf("archive %q: %w: %s (use WithOverwrite to replace it)", path, ErrExists, tarfile.PartName(path, 0))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive %q: %w", path, err)
	}
	p := &partOutput{path: path}
	if _, err := p.next(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *partOutput) Write(b []byte) (int, error) { return p.cur.Write(b) }

// next starts the next part.
func (p *partOutput) next() (io.Writer, error) {
	name := filepath.Base(tarfile.PartName(p.path, len(p.files)))
	f, err := os.CreateTemp(filepath.Dir(p.path), "."+name+".*.darc-tmp")
	if err != nil {
		return nil, fmt.Errorf("archive %q: creating temp file: %w", p.path, err)
	}
	p.files = append(p.files, f)
	p.cur = &writebackFile{File: f}
	return p, nil
}

// place syncs the parts and, unless ctx is done by then, renames them into place. Without
// overwrite an existing part is refused; with it, old parts beyond the new set are removed.
// On failure no new part is left behind.
func (p *partOutput) place(ctx context.Context, overwrite bool) error {
	for i, f := range p.files {
		if err := f.Chmod(outputMode(tarfile.PartName(p.path, i), overwrite)); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit abandoned before the rename: %w", err)
	}
	var placed []string
	for i, f := range p.files {
		part := tarfile.PartName(p.path, i)
		if err := placeFile(f.Name(), part, overwrite); err != nil {
			for _, q := range placed {
				_ = os.Remove(q)
			}
			return fmt.Errorf("%s: %w", part, err)
		}
		placed = append(placed, part)
	}
	p.closeFiles()
	if overwrite {
		for i := len(p.files); ; i++ {
			if err := os.Remove(tarfile.PartName(p.path, i)); err != nil {
				break
			}
		}
	}
	p.files = nil
	syncDir(p.path)
	return nil
}

// discard removes the parts' temp files.
func (p *partOutput) discard() error {
	errs := []error{p.closeFiles()}
	for _, f := range p.files {
		if err := os.Remove(f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	p.files = nil
	return errors.Join(errs...)
}

func (p *partOutput) closeFiles() error {
	var errs []error
	for _, f := range p.files {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
