package tarfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// maxLinkHops bounds how many links are followed to reach a regular file. Real archives use
// one (Docker's shared layers, containers/image's legacy layer.tar); a few more are tolerated
// for hand-made archives.
const maxLinkHops = 16

// readAhead is how much the header scan reads at once. Headers of small members sit close
// together, so one read usually covers many of them; a large member costs one read for its
// last byte (archive/tar checks it exists) and the following header.
const readAhead = 64 << 10

// Member is one entry of the tar as its header describes it.
type Member struct {
	// Name is the normalized name (see cleanName).
	Name string
	// Type is the tar type flag: tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeDir, …
	Type byte
	// Offset is where the member's data starts in the tar.
	Offset int64
	// Size is the size of the data as stored.
	Size int64
	// Linkname is the link target: for a symlink as written in the header, for a hardlink
	// normalized like Name.
	Linkname string
	// HeaderOffset is where the member's first header block (including any PAX or GNU
	// long-name block) starts.
	HeaderOffset int64
}

// Index is the member index of a tar, built by one pass over its headers: what each path
// holds once the tar is extracted (see extract.go).
//
// None of its fields are modified after BuildIndex returns, and the underlying io.ReaderAt is
// only read through ReadAt, so an Index is safe for concurrent use.
type Index struct {
	r    io.ReaderAt
	size int64
	// end is where the tar ends (see BuildIndex); what follows is ignored.
	end int64
	// members in archive order, PAX global headers and members naming the root left out.
	members []Member
	// byName maps a normalized name to the position of its last occurrence in members.
	byName map[string]int
	// duplicates lists names that occur more than once, in order of their second occurrence.
	duplicates []string
	// insecure lists raw names that climb out of the root; extraction puts them inside it.
	insecure []string
	// needsTree is set during the scan by what makes byName differ from what extraction
	// leaves: links, and names used twice other than by directories.
	needsTree bool
	// root is the tree extraction leaves; nil when byName says the same (see finish).
	root *node
	// extractErr is the first member on which extraction fails (wrapping ErrNotExtractable
	// or ErrBadLink): docker load then fails.
	extractErr error
	// sparse holds the map of each sparse member, by data offset (see sparse.go).
	sparse map[int64]*sparseMap
}

// cleanName normalizes a member name or a path taken from manifest.json: "./x", "/x" and "x"
// are the same member. It returns ErrInsecurePath for a name that climbs above the root or
// holds a NUL byte.
func cleanName(name string) (string, error) {
	if isClean(name) {
		return name, nil
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrInsecurePath, name)
	}
	c := path.Clean("/" + name)
	// path.Clean of a rooted path never climbs above "/"; detect the climb on the raw name.
	if escapes(name) {
		return "", fmt.Errorf("%w: %q leaves the archive root", ErrInsecurePath, name)
	}
	c = strings.TrimPrefix(c, "/")
	if c == "" {
		return "", fmt.Errorf("%w: %q names the archive root", ErrInsecurePath, name)
	}
	return c, nil
}

// isClean reports, cheaply, whether name is already in normal form: the common case, checked
// for every member of an archive with many of them.
func isClean(name string) bool {
	if name == "" || name[0] == '/' || name[len(name)-1] == '/' {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case 0:
			return false
		case '.':
			// "." or ".." as a whole element.
			if (i == 0 || name[i-1] == '/') && (i+1 == len(name) || name[i+1] == '/' || (name[i+1] == '.' && (i+2 == len(name) || name[i+2] == '/'))) {
				return false
			}
		case '/':
			if name[i+1] == '/' {
				return false
			}
		}
	}
	return true
}

// escapes reports whether a relative walk through the slash-separated elements of p (a
// leading "/" is taken as the archive root) ever goes above its starting point.
func escapes(p string) bool {
	depth := 0
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// scanReader serves the header scan: sequential reads from a position with a read-ahead
// buffer, and seeks that only move the position.
type scanReader struct {
	r        io.ReaderAt
	size     int64
	pos      int64
	buf      []byte
	bufStart int64
}

func (s *scanReader) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.pos < s.bufStart || s.pos >= s.bufStart+int64(len(s.buf)) {
		n := int64(cap(s.buf))
		if rem := s.size - s.pos; rem < n {
			n = rem
		}
		got, err := s.r.ReadAt(s.buf[:n], s.pos)
		s.buf = s.buf[:got]
		s.bufStart = s.pos
		if got == 0 {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	n := copy(p, s.buf[s.pos-s.bufStart:])
	s.pos += int64(n)
	return n, nil
}

func (s *scanReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.pos
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("archive: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("archive: negative position")
	}
	s.pos = offset
	return offset, nil
}

// BuildIndex reads the headers of the tar in r (size bytes) once, seeking over member data.
// It fails with ErrTooLarge when there are more than maxMembers members (0 means no limit).
// The tar ends where archive/tar sees its end, as docker load does: after the end-of-archive
// blocks, or at the end of r on a header boundary; anything after is ignored (see
// Reader.Trailer).
//
// Plain ustar, GNU and v7 headers, which is what image tools write, are decoded directly
// from their 512-byte blocks. At the first header that needs more (PAX or GNU long-name
// extensions, base-256 sizes, sparse files, the end-of-archive blocks, anything malformed)
// the scan hands over to archive/tar for the rest of the archive, so every archive is read
// with archive/tar's semantics.
func BuildIndex(r io.ReaderAt, size int64, maxMembers int) (*Index, error) {
	sr := &scanReader{r: r, size: size, buf: make([]byte, 0, readAhead)}
	ix := &Index{r: r, size: size, byName: make(map[string]int)}
	var blk [blockSize]byte
	var tr *tar.Reader // nil while the fast path is in use
	var end int64      // where the previous member's data ends
	for {
		hdrStart := (end + blockSize - 1) / blockSize * blockSize
		var hdr fastHeader
		if tr == nil {
			if ok := readFastHeader(sr, &blk, &hdr); !ok {
				sr.pos = hdrStart
				tr = tar.NewReader(sr)
			}
		}
		var sp *sparseMap
		if tr != nil {
			th, err := tr.Next()
			if err == io.EOF {
				ix.end = min(sr.pos, size)
				break
			}
			if err != nil {
				if len(ix.members) == 0 && errors.Is(err, tar.ErrHeader) {
					return nil, fmt.Errorf("%w: not a tar file: %w", ErrNotDockerArchive, err)
				}
				return nil, fmt.Errorf("reading tar header at offset %d: %w", hdrStart, err)
			}
			hdr = headerOf(th)
			if isSparse(th) {
				if sp, err = readSparseMap(r, size, th, hdrStart, sr.pos); err != nil {
					return nil, fmt.Errorf("member %q at offset %d: %w", th.Name, hdrStart, err)
				}
			}
		}
		dataStart := sr.pos
		if maxMembers > 0 && len(ix.members) >= maxMembers {
			return nil, fmt.Errorf("%w: more than %d tar members", ErrTooLarge, maxMembers)
		}
		stored := hdr.size
		if sp != nil {
			stored = sp.stored
		}
		if stored < 0 || stored > size-dataStart { // not dataStart+stored: it can overflow
			return nil, fmt.Errorf("member %q: claims %d bytes past the end of the archive: %w", hdr.name, stored, io.ErrUnexpectedEOF)
		}
		end = dataStart + stored
		if tr == nil && !isHeaderOnlyType(hdr.typeflag) {
			sr.pos = dataStart + (hdr.size+blockSize-1)/blockSize*blockSize
		}
		if sp != nil {
			if ix.sparse == nil {
				ix.sparse = map[int64]*sparseMap{}
			}
			ix.sparse[dataStart] = sp
		}
		ix.add(hdr, dataStart, hdrStart)
	}
	ix.finish()
	return ix, nil
}

// headerOf is the part of a header archive/tar decoded that the index keeps.
func headerOf(th *tar.Header) fastHeader {
	hdr := fastHeader{name: th.Name, linkname: th.Linkname, size: th.Size, typeflag: th.Typeflag}
	if isHeaderOnlyType(hdr.typeflag) || hdr.typeflag == tar.TypeGNUSparse {
		// A link's or directory's size field is not data (archive/tar ignores it too); an
		// old GNU sparse member cannot be extracted, so its data is never read.
		hdr.size = 0
	}
	return hdr
}

const blockSize = 512

// fastHeader is the part of a tar header the index keeps.
type fastHeader struct {
	name, linkname string
	size           int64
	typeflag       byte
}

// readFastHeader decodes the header block at the scan position when it is a plain header
// with nothing that needs archive/tar; it reports false otherwise, leaving the position
// undefined.
func readFastHeader(sr *scanReader, blk *[blockSize]byte, h *fastHeader) bool {
	if sr.size-sr.pos < blockSize {
		return false
	}
	if _, err := io.ReadFull(sr, blk[:]); err != nil {
		return false
	}
	return parseFastHeader(blk, h)
}

// parseFastHeader decodes a header block when it is a plain header with nothing that needs
// archive/tar (see BuildIndex); it reports false otherwise.
func parseFastHeader(blk *[blockSize]byte, h *fastHeader) bool {
	b := blk[:]
	if !isTarHeader(b) {
		return false // includes the all-zero end-of-archive block
	}
	switch b[156] {
	case tar.TypeReg, tar.TypeRegA, tar.TypeLink, tar.TypeSymlink, tar.TypeDir, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeCont:
	default:
		return false // PAX, GNU long names, sparse, vendor extensions
	}
	magic, version := string(b[257:263]), string(b[263:265])
	var prefix string
	v7 := false
	switch {
	case magic == "ustar\x00" && string(b[508:512]) == "tar\x00":
		return false // star: a different prefix field
	case magic == "ustar\x00":
		prefix = cString(b[345:500])
	case magic == "ustar " && version == " \x00": // GNU
		if b[345] != 0 || b[357] != 0 {
			// atime or ctime set: archive/tar may read that area as a name prefix instead.
			return false
		}
	default:
		v7 = true
	}
	// archive/tar refuses a header whose numeric fields do not parse, including those the
	// index does not use (mode, uid, gid, mtime; devmajor and devminor past v7). Plain octal
	// is decoded here; anything else is left to archive/tar.
	for _, f := range [...][2]int{{100, 108}, {108, 116}, {116, 124}, {136, 148}, {329, 337}, {337, 345}} {
		if v7 && f[0] >= 329 {
			break
		}
		if _, ok := parseOctal(b[f[0]:f[1]]); !ok {
			return false
		}
	}
	sizeField := b[124:136]
	if sizeField[0]&0x80 != 0 {
		return false // base-256
	}
	size, ok := parseOctal(sizeField)
	if !ok {
		return false
	}
	h.name = cString(b[0:100])
	if prefix != "" {
		h.name = prefix + "/" + h.name
	}
	h.linkname = cString(b[157:257])
	h.size = size
	h.typeflag = b[156]
	if h.typeflag == tar.TypeRegA {
		h.typeflag = tar.TypeReg
		if strings.HasSuffix(h.name, "/") {
			h.typeflag = tar.TypeDir
		}
	}
	if isHeaderOnlyType(h.typeflag) {
		h.size = 0
	}
	return true
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseOctal parses a numeric header field the way archive/tar does for octal values:
// surrounding spaces and NULs are ignored and an empty field is 0.
func parseOctal(b []byte) (int64, bool) {
	b = bytes.Trim(b, " \x00")
	var n int64
	for _, c := range b {
		if c < '0' || c > '7' || n > (1<<62)>>3 {
			return 0, false
		}
		n = n<<3 | int64(c-'0')
	}
	return n, true
}

// isHeaderOnlyType reports the types whose size field archive/tar ignores: they have no data.
func isHeaderOnlyType(flag byte) bool {
	switch flag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// add records one member.
func (ix *Index) add(hdr fastHeader, dataStart, hdrStart int64) {
	m, ok, climbed := makeMember(hdr, dataStart, hdrStart)
	if climbed {
		ix.insecure = append(ix.insecure, hdr.name)
	}
	if ok {
		ix.addMember(m)
	}
}

// makeMember normalizes a header into a Member, its name placed as extraction places it
// (see memberName). It reports false for what extraction skips: a PAX global header, a member
// naming the root; and whether the name climbed out of the root.
func makeMember(hdr fastHeader, dataStart, hdrStart int64) (m Member, ok, climbed bool) {
	if hdr.typeflag == tar.TypeXGlobalHeader {
		return Member{}, false, false
	}
	name, climbed := memberName(hdr.name)
	if name == "" {
		return Member{}, false, climbed
	}
	m = Member{Name: name, Type: hdr.typeflag, Offset: dataStart, Size: hdr.size, Linkname: hdr.linkname, HeaderOffset: hdrStart}
	if m.Type == tar.TypeRegA {
		m.Type = tar.TypeReg
	}
	if m.Type == tar.TypeLink {
		// Extraction links to the target's path taken from the root, a climb stopping there.
		m.Linkname, _ = memberName(hdr.linkname)
	}
	if m.Type != tar.TypeReg {
		// Links and directories carry no data of their own.
		m.Size = 0
	}
	return m, true, climbed
}

// addMember appends a normalized member; a later member of the same name wins.
func (ix *Index) addMember(m Member) {
	if prev, dup := ix.byName[m.Name]; dup {
		if m.Type != tar.TypeDir {
			ix.duplicates = append(ix.duplicates, m.Name)
		}
		if m.Type != tar.TypeDir || ix.members[prev].Type != tar.TypeDir {
			ix.needsTree = true // the earlier one is removed, with anything under it
		}
	}
	switch m.Type {
	case tar.TypeReg, tar.TypeDir, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		ix.needsTree = true // links, and types extraction fails on
	}
	ix.byName[m.Name] = len(ix.members)
	if len(ix.members) == cap(ix.members) {
		// Doubling, where append grows a large slice by a quarter: an archive of 100,000
		// members would otherwise copy its member list some 20 times.
		ix.members = slices.Grow(ix.members, max(len(ix.members), 64))
	}
	ix.members = append(ix.members, m)
}

// Members returns the members in archive order. The slice must not be modified.
func (ix *Index) Members() []Member { return ix.members }

// Duplicates returns names that occur more than once (the last occurrence is the one used).
func (ix *Index) Duplicates() []string { return ix.duplicates }

// Insecure returns raw member names that were skipped because they would leave the root.
func (ix *Index) Insecure() []string { return ix.insecure }

// Size is the size of the tar's input, including what follows the end of the tar.
func (ix *Index) Size() int64 { return ix.size }

// ReaderAt is the tar the index was built from.
func (ix *Index) ReaderAt() io.ReaderAt { return ix.r }

// Lookup returns the member at name once the tar is extracted, whatever its type: symlinks
// are followed as Resolve follows them except in the last component (a symlink there is
// returned as such), and a directory made implicitly has Type tar.TypeDir and no offset.
// It reports false when nothing is there or the path cannot be walked.
func (ix *Index) Lookup(name string) (Member, bool) {
	c, err := cleanName(name)
	if err != nil {
		return Member{}, false
	}
	if ix.root == nil {
		i, ok := ix.byName[c]
		if !ok {
			return Member{}, false
		}
		return ix.members[i], true
	}
	n, err := ix.walk(ix.root, c, walkLstat)
	if err != nil || n == nil {
		return Member{}, false
	}
	if n.member < 0 {
		return Member{Name: c, Type: tar.TypeDir}, true
	}
	return ix.members[n.member], true
}

// Resolve returns the regular file that name refers to once the tar is extracted, walking
// the path as docker load does: symlinks followed wherever they are (a target taken from the
// root when absolute, relative to the link's directory otherwise, ".." stopping at the root),
// hard links holding what their target held when they were extracted. A name that climbs out
// of the root is ErrInsecurePath; nothing at the path is ErrMemberNotFound; a path through a
// link that leads nowhere, a loop or too long a chain, or something other than a regular
// file is ErrBadLink. The member returned is the one whose data the path holds.
func (ix *Index) Resolve(name string) (Member, error) {
	c, err := cleanName(name)
	if err != nil {
		return Member{}, err
	}
	var m Member
	if ix.root == nil {
		i, ok := ix.byName[c]
		if !ok {
			return Member{}, fmt.Errorf("%w: %q", ErrMemberNotFound, name)
		}
		m = ix.members[i]
	} else {
		n, linked, err := ix.walkLinks(ix.root, c, walkScoped)
		switch {
		case err != nil:
			return Member{}, fmt.Errorf("%w: %w", ErrBadLink, err)
		case n == nil && linked:
			return Member{}, fmt.Errorf("%w: %q: its links lead to nothing once the archive is extracted", ErrBadLink, name)
		case n == nil:
			return Member{}, fmt.Errorf("%w: %q (once the archive is extracted)", ErrMemberNotFound, name)
		case n.member < 0:
			return Member{}, fmt.Errorf("%w: %q is a directory", ErrBadLink, name)
		}
		m = ix.members[n.member]
	}
	if m.Type != tar.TypeReg {
		return Member{}, fmt.Errorf("%w: %q: %q is not a regular file (type %q)", ErrBadLink, name, m.Name, m.Type)
	}
	return m, nil
}

// Open resolves name and returns a reader over its bytes and the resolved member.
func (ix *Index) Open(name string) (*io.SectionReader, Member, error) {
	m, err := ix.Resolve(name)
	if err != nil {
		return nil, Member{}, err
	}
	return ix.section(m), m, nil
}

// ReadSmall reads a whole member of at most max bytes (after following links).
func (ix *Index) ReadSmall(name string, max int64) ([]byte, Member, error) {
	sr, m, err := ix.Open(name)
	if err != nil {
		return nil, Member{}, err
	}
	if max > 0 && m.Size > max {
		return nil, m, fmt.Errorf("%w: member %q is %d bytes, the limit is %d", ErrTooLarge, name, m.Size, max)
	}
	buf := make([]byte, m.Size)
	if _, err := io.ReadFull(sr, buf); err != nil {
		return nil, m, fmt.Errorf("reading member %q: %w", name, err)
	}
	return buf, m, nil
}
