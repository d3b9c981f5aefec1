package archivetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
)

// member is one tar member of a generated archive.
type member struct {
	hdr  tar.Header
	body []byte
}

// Entry is one raw tar member, for hand-made and hostile archives.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg when 0; also tar.TypeSymlink, tar.TypeLink, tar.TypeDir, …
	Linkname string
	Body     []byte // only for regular files
	Mode     int64  // 0 means 0644 for files, 0755 for directories, 0777 for symlinks
}

// Tar writes entries in the given order (uid/gid 0, mtime 0) and returns the tar's bytes.
// Names are written exactly as given, so names that archive/tar permits but an extractor must
// refuse (`../x`, `/abs`, the same name twice) are possible. Tar panics if archive/tar refuses
// an entry, which only a malformed Entry (such as an unknown Type with a body) causes.
func Tar(entries []Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: e.Type,
			Name:     e.Name,
			Linkname: e.Linkname,
			Mode:     e.Mode,
			ModTime:  time.Unix(0, 0),
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if hdr.Mode == 0 {
			switch hdr.Typeflag {
			case tar.TypeDir:
				hdr.Mode = 0o755
			case tar.TypeSymlink:
				hdr.Mode = 0o777
			default:
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(fmt.Sprintf("archivetest.Tar: entry %q: %v", e.Name, err))
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				panic(fmt.Sprintf("archivetest.Tar: entry %q: %v", e.Name, err))
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(fmt.Sprintf("archivetest.Tar: %v", err))
	}
	return buf.Bytes()
}

// ManifestItem is one entry of manifest.json, with the field names and order Docker uses.
// RepoTags nil is written as null, an empty slice as [].
type ManifestItem struct {
	Config       string
	RepoTags     []string
	Layers       []string
	Parent       string                        `json:",omitempty"`
	LayerSources map[digest.Digest]LayerSource `json:",omitempty"`
}

// LayerSource is a value of manifest.json's LayerSources, keyed by diffID. Field order is
// that of Docker's distribution.Descriptor (mediaType, size, digest).
type LayerSource struct {
	MediaType string        `json:"mediaType,omitempty"`
	Size      int64         `json:"size,omitempty"`
	Digest    digest.Digest `json:"digest,omitempty"`
	URLs      []string      `json:"urls,omitempty"`
}

// ManifestJSON marshals items as a compact manifest.json (no trailing newline; map keys sorted).
func ManifestJSON(items []ManifestItem) []byte {
	b, err := json.Marshal(items)
	if err != nil {
		panic(err) // cannot happen: strings, slices and string-keyed maps
	}
	return b
}

// jsonLine is what json.Encoder.Encode writes: compact JSON and a newline.
func jsonLine(v any) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// writeArchive applies the ordering/naming options and writes members as a (compressed) tar.
func writeArchive(w io.Writer, members []member, opts Options) (err error) {
	if opts.ManifestFirst {
		members = manifestFirst(members)
	}
	cw, err := compressWriter(w, opts.Compression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(cw)
	for i := range members {
		m := &members[i]
		hdr := m.hdr
		if opts.DotSlash {
			hdr.Name = "./" + hdr.Name
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("archivetest: member %q: %w", hdr.Name, err)
		}
		if len(m.body) > 0 {
			if _, err := tw.Write(m.body); err != nil {
				return fmt.Errorf("archivetest: member %q: %w", hdr.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("archivetest: closing tar: %w", err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("archivetest: closing %s stream: %w", opts.Compression, err)
	}
	return nil
}

func manifestFirst(members []member) []member {
	out := make([]member, 0, len(members))
	for _, name := range []string{"manifest.json", "repositories"} {
		for _, m := range members {
			if m.hdr.Name == name {
				out = append(out, m)
			}
		}
	}
	for _, m := range members {
		if m.hdr.Name != "manifest.json" && m.hdr.Name != "repositories" {
			out = append(out, m)
		}
	}
	return out
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

func compressWriter(w io.Writer, compression string) (io.WriteCloser, error) {
	switch compression {
	case "":
		return nopWriteCloser{w}, nil
	case "gzip":
		return gzip.NewWriter(w), nil
	case "zstd":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("archivetest: zstd: %w", err)
		}
		return zw, nil
	case "xz":
		xw, err := xz.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("archivetest: xz: %w", err)
		}
		return xw, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedCompression, compression)
}

// compressor compresses layer blobs. gzip output is that of compress/gzip at the default
// level with an empty header, which is deterministic.
type compressor struct {
	zenc *zstd.Encoder
}

func (c *compressor) gzip(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c *compressor) xz(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := xw.Write(raw); err != nil {
		return nil, err
	}
	if err := xw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c *compressor) zstd(raw []byte) []byte {
	if c.zenc == nil {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only invalid options fail
		}
		c.zenc = enc
	}
	return c.zenc.EncodeAll(raw, nil)
}

func isZstd(b []byte) bool { return bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) }

// decompressBlob returns a gzip or zstd blob decompressed.
func decompressBlob(b []byte) ([]byte, error) {
	if isZstd(b) {
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// GzipBytes returns b gzip-compressed, deterministically (helper for hand-made cases).
func GzipBytes(b []byte) []byte {
	var c compressor
	out, err := c.gzip(b)
	if err != nil {
		panic(err) // writing to memory cannot fail
	}
	return out
}

// headers for the tools' member styles

// ciReg is a containers/image regular member: mode 0444, mtime 0, no user names.
func ciReg(name string, body []byte) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o444, ModTime: time.Unix(0, 0)}, body: body}
}

// ciSymlink is a containers/image symlink: tar.FileInfoHeader of a symlink FileInfo whose
// permission bits are 0.
func ciSymlink(name, target string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, ModTime: time.Unix(0, 0)}}
}

// plainReg is a header as go-containerregistry and containerd write it: only type, name,
// mode and size set (mtime 0).
func plainReg(name string, mode int64, body []byte) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func plainDir(name string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

// mobyStyle is how moby's pkg/archive writes the files of its temporary directory: PAX
// format, uid/gid 0, files 0644, directories 0755 with a trailing slash, symlinks 0777. Docker
// 20.10 (and pre-1.10 Docker) also set the old file-type bits in the mode (0100644, 040755,
// 0120777) and the user and group names "root"; current moby does neither.
type mobyStyle struct {
	typeBits bool
	uname    string
}

func (s mobyStyle) hdr(typ byte, name string, mode int64, mtime time.Time) tar.Header {
	if s.typeBits {
		switch typ {
		case tar.TypeDir:
			mode |= 0o40000
		case tar.TypeSymlink:
			mode |= 0o120000
		default:
			mode |= 0o100000
		}
	}
	return tar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: mtime, Uname: s.uname, Gname: s.uname, Format: tar.FormatPAX}
}

func (s mobyStyle) reg(name string, body []byte, mtime time.Time) member {
	return member{hdr: s.hdr(tar.TypeReg, name, 0o644, mtime), body: body}
}

func (s mobyStyle) dir(name string, mtime time.Time) member {
	return member{hdr: s.hdr(tar.TypeDir, name+"/", 0o755, mtime)}
}

func (s mobyStyle) symlink(name, target string, mtime time.Time) member {
	m := member{hdr: s.hdr(tar.TypeSymlink, name, 0o777, mtime)}
	m.hdr.Linkname = target
	return m
}

// walkSort orders members as filepath.WalkDir visits a directory tree: names are compared
// component by component, so a directory's contents follow it directly.
func walkSort(members []member) {
	sort.SliceStable(members, func(i, j int) bool {
		return walkLess(members[i].hdr.Name, members[j].hdr.Name)
	})
}

func walkLess(a, b string) bool {
	ac := strings.Split(strings.TrimSuffix(a, "/"), "/")
	bc := strings.Split(strings.TrimSuffix(b, "/"), "/")
	for k := 0; k < len(ac) && k < len(bc); k++ {
		if ac[k] != bc[k] {
			return ac[k] < bc[k]
		}
	}
	return len(ac) < len(bc)
}

// memberSet collects members by name, keeping the first of each name (a file written twice to
// a directory is still one file).
type memberSet struct {
	list  []member
	index map[string]int // lookup only
}

func (s *memberSet) add(m member) {
	if s.index == nil {
		s.index = map[string]int{}
	}
	if _, ok := s.index[m.hdr.Name]; ok {
		return
	}
	s.index[m.hdr.Name] = len(s.list)
	s.list = append(s.list, m)
}
