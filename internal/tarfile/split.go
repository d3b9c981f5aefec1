package tarfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// A split archive is one archive cut into parts NAME.000, NAME.001, … (at most 1000), as
// darc save --split-size writes them and as `split -d -a 3 FILE FILE.` cuts any file. Read
// one after another, the parts are the archive.

// maxParts is the number of part names three digits allow.
const maxParts = 1000

var partSuffix = regexp.MustCompile(`\.([0-9]{3})$`)

// PartName returns the name of part i (from 0) of the split archive NAME.
func PartName(name string, i int) string { return fmt.Sprintf("%s.%03d", name, i) }

// SplitParts returns the parts of the split archive that path names, in order, or nil when
// it names none. path may be the first part (NAME.000, with NAME.001 beside it), NAME when
// only its parts exist (a set of one part too), or a glob pattern that matches exactly the parts of one archive. A
// later part (NAME.003) is an error that names the first.
func SplitParts(path string) ([]string, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		m := partSuffix.FindStringSubmatch(path)
		if m == nil {
			return nil, nil
		}
		name := strings.TrimSuffix(path, m[0])
		if m[1] != "000" {
			if _, err := os.Stat(PartName(name, 0)); err == nil {
				return nil, fmt.Errorf("archive %q is part %s of a split archive: give its first part, %s", path, m[1], PartName(name, 0))
			}
			return nil, nil
		}
		parts, err := partsFrom(name)
		if len(parts) < 2 {
			return nil, err // a file that happens to end in .000
		}
		return parts, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if _, err := os.Stat(PartName(path, 0)); err == nil {
		return partsFrom(path)
	}
	if !strings.ContainsAny(path, `*?[`) {
		return nil, nil
	}
	matches, err := filepath.Glob(path)
	if err != nil || len(matches) == 0 {
		return nil, err
	}
	return globParts(path, matches)
}

// partsFrom lists NAME.000, NAME.001, … up to the first that does not exist.
func partsFrom(name string) ([]string, error) {
	var parts []string
	for i := 0; i < maxParts; i++ {
		p := PartName(name, i)
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			return nil, err
		}
		parts = append(parts, p)
	}
	for i := len(parts) + 1; i < len(parts)+3 && i < maxParts; i++ {
		if _, err := os.Stat(PartName(name, i)); err == nil {
			return nil, fmt.Errorf("split archive %s: part %s is missing, but %s is there", name, PartName(name, len(parts)), PartName(name, i))
		}
	}
	return parts, nil
}

// globParts checks that matches, what pattern matched, are NAME.000 to NAME.N without a gap.
func globParts(pattern string, matches []string) ([]string, error) {
	sort.Strings(matches)
	m := partSuffix.FindStringSubmatch(matches[0])
	if m == nil || m[1] != "000" {
		return nil, fmt.Errorf("archive pattern %q: %s is not the first part of a split archive (NAME.000)", pattern, matches[0])
	}
	name := strings.TrimSuffix(matches[0], m[0])
	for i, p := range matches {
		if p != PartName(name, i) {
			return nil, fmt.Errorf("archive pattern %q: matches %s where part %s was expected: not the parts of one split archive", pattern, p, PartName(name, i))
		}
	}
	return matches, nil
}

// partFiles reads open part files as one file: an io.ReaderAt over their concatenation.
type partFiles struct {
	files []*os.File
	infos []os.FileInfo // what stat said of each file when it was opened
	ends  []int64       // ends[i] is where part i ends in the concatenation
}

// openPartFiles opens the regular files at paths.
func openPartFiles(paths []string) (*partFiles, error) {
	p := &partFiles{}
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.files = append(p.files, f)
		st, err := f.Stat()
		if err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("part %q is not a regular file", path)
		}
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.ends = append(p.ends, p.Size()+st.Size())
		p.infos = append(p.infos, st)
	}
	return p, nil
}

// sources are the parts as Sources.
func (p *partFiles) sources() []Source {
	out := make([]Source, len(p.files))
	for i, f := range p.files {
		out[i] = Source{File: f, Info: p.infos[i]}
	}
	return out
}

// Size is the parts' total size.
func (p *partFiles) Size() int64 {
	if len(p.ends) == 0 {
		return 0
	}
	return p.ends[len(p.ends)-1]
}

// sizes returns each part's size.
func (p *partFiles) sizes() []int64 {
	out := make([]int64, len(p.ends))
	var start int64
	for i, end := range p.ends {
		out[i], start = end-start, end
	}
	return out
}

// ReadAt reads from the part that holds off, and on into the next ones.
func (p *partFiles) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	n := 0
	i := sort.Search(len(p.ends), func(i int) bool { return p.ends[i] > off })
	for ; n < len(b) && i < len(p.files); i++ {
		start := int64(0)
		if i > 0 {
			start = p.ends[i-1]
		}
		want := int(min(int64(len(b)-n), p.ends[i]-off))
		k, err := p.files[i].ReadAt(b[n:n+want], off-start)
		n += k
		off += int64(k)
		if k < want {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("part %s is shorter than when it was opened: %w", p.files[i].Name(), io.ErrUnexpectedEOF)
			}
			return n, err
		}
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// Close closes every part.
func (p *partFiles) Close() error {
	var errs []error
	for _, f := range p.files {
		errs = append(errs, f.Close())
	}
	p.files = nil
	return errors.Join(errs...)
}
