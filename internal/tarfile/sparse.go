package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// GNU tar's --sparse --format=posix stores a file with holes as a regular member whose data
// holds only the non-hole fragments, described by a sparse map in PAX records (formats 0.0
// and 0.1) or at the start of the data (format 1.0). archive/tar expands such a member on
// Read, and docker extracts it expanded, so the index serves it expanded too: by its logical
// size, reading fragments from the tar and zeros for the holes. (Old GNU sparse members,
// type 'S', are a type docker's extraction refuses; see extract.go.)

// errSparseMap means a sparse map the index cannot read back.
var errSparseMap = errors.New("unreadable GNU sparse map")

// sparseMap says where a sparse member's bytes are.
type sparseMap struct {
	frags  []sparseFrag // in logical order, not overlapping
	stored int64        // data bytes stored in the tar after the member's data offset
}

// sparseFrag is one stored fragment: logical [off, off+n), stored at the member's data offset
// plus at.
type sparseFrag struct {
	off, n, at int64
}

// PAX records of GNU sparse files.
const (
	paxSparseMajor = "GNU.sparse.major"
	paxSparseMinor = "GNU.sparse.minor"
	paxSparseMap   = "GNU.sparse.map"
)

// isSparse reports whether archive/tar reads th as a PAX sparse file (it then expands it).
func isSparse(th *tar.Header) bool {
	if th.Typeflag != tar.TypeReg {
		return false
	}
	major, minor := th.PAXRecords[paxSparseMajor], th.PAXRecords[paxSparseMinor]
	switch {
	case major == "0" && (minor == "0" || minor == "1"), major == "1" && minor == "0":
		return true
	case major != "" || minor != "":
		return false // a version archive/tar does not know: read as stored
	}
	return th.PAXRecords[paxSparseMap] != ""
}

// readSparseMap reads the sparse map of th, a member whose headers start at hdrStart and
// whose data (after a format 1.0 map) starts at dataStart, as archive/tar has left it.
func readSparseMap(r io.ReaderAt, size int64, th *tar.Header, hdrStart, dataStart int64) (*sparseMap, error) {
	var nums []string
	if th.PAXRecords[paxSparseMajor] == "1" {
		raw, err := rawDataStart(r, hdrStart, dataStart)
		if err != nil {
			return nil, err
		}
		text := make([]byte, dataStart-raw)
		if _, err := r.ReadAt(text, raw); err != nil {
			return nil, fmt.Errorf("%w: %w", errSparseMap, err)
		}
		if i := bytes.LastIndexByte(text, '\n'); i >= 0 {
			text = text[:i]
		}
		nums = strings.Split(string(text), "\n")
		if len(nums) == 0 || nums[0] != strconv.Itoa((len(nums)-1)/2) {
			return nil, fmt.Errorf("%w: entry count does not match", errSparseMap)
		}
		nums = nums[1:]
	} else if m := th.PAXRecords[paxSparseMap]; m != "" {
		nums = strings.Split(m, ",")
	}
	if len(nums)%2 != 0 {
		return nil, fmt.Errorf("%w: odd number of fields", errSparseMap)
	}
	sp := &sparseMap{}
	var end int64
	for i := 0; i < len(nums); i += 2 {
		off, err1 := strconv.ParseInt(nums[i], 10, 64)
		n, err2 := strconv.ParseInt(nums[i+1], 10, 64)
		if err1 != nil || err2 != nil || off < end || n < 0 || n > th.Size-off || sp.stored > size-n {
			return nil, fmt.Errorf("%w: bad fragment %q,%q", errSparseMap, nums[i], nums[i+1])
		}
		if n > 0 {
			sp.frags = append(sp.frags, sparseFrag{off: off, n: n, at: sp.stored})
		}
		sp.stored += n
		end = off + n
	}
	return sp, nil
}

// rawDataStart walks the header blocks from hdrStart (PAX and GNU long-name headers, then
// the member's own header) and returns where the member's raw data starts.
func rawDataStart(r io.ReaderAt, hdrStart, limit int64) (int64, error) {
	var blk [blockSize]byte
	for pos := hdrStart; pos < limit; {
		if _, err := r.ReadAt(blk[:], pos); err != nil {
			return 0, fmt.Errorf("%w: %w", errSparseMap, err)
		}
		pos += blockSize
		switch blk[156] {
		case tar.TypeXHeader, tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			n, ok := parseOctal(blk[124:136])
			if !ok {
				return 0, fmt.Errorf("%w: extended header size", errSparseMap)
			}
			pos += (n + blockSize - 1) / blockSize * blockSize
		default:
			return pos, nil
		}
	}
	return 0, fmt.Errorf("%w: no member header before its data", errSparseMap)
}

// section returns a reader over what member m holds: its stored bytes, or for a sparse
// member its expanded content.
func (ix *Index) section(m Member) *io.SectionReader {
	if sp := ix.sparse[m.Offset]; sp != nil && m.Type == tar.TypeReg {
		return io.NewSectionReader(&sparseReader{r: ix.r, data: m.Offset, m: sp}, 0, m.Size)
	}
	return io.NewSectionReader(ix.r, m.Offset, m.Size)
}

// sparseReader reads a sparse member expanded; the SectionReader around it bounds the size.
type sparseReader struct {
	r    io.ReaderAt
	data int64
	m    *sparseMap
}

func (s *sparseReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		// The first fragment that ends after pos.
		i := sort.Search(len(s.m.frags), func(i int) bool { return s.m.frags[i].off+s.m.frags[i].n > pos })
		if i == len(s.m.frags) || pos < s.m.frags[i].off {
			// A hole: zeros up to the next fragment (or to the end, which the caller bounds).
			n := len(p) - done
			if i < len(s.m.frags) {
				n = int(min(int64(n), s.m.frags[i].off-pos))
			}
			clear(p[done : done+n])
			done += n
			continue
		}
		f := s.m.frags[i]
		n := int(min(int64(len(p)-done), f.off+f.n-pos))
		got, err := s.r.ReadAt(p[done:done+n], s.data+f.at+pos-f.off)
		done += got
		if err != nil && got < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	return done, nil
}
