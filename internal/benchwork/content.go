//go:build linux

package benchwork

import (
	"archive/tar"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path"
	"strings"
	"time"
)

// The content of generated layers: a file tree that looks like a Linux root file system or an
// application directory. Three kinds of file make the mix of a real image, by bytes:
//
//   - text (sources, scripts, docs, configs): words from a Zipf-distributed vocabulary in
//     indented lines with punctuation; gzip -6 makes it about 4-5× smaller;
//   - binaries (executables, shared libraries): sections of skewed bytes (code-like, about
//     6 bits of entropy per byte), string tables, zero padding and some random data;
//     about 2× smaller;
//   - assets that are already compressed (.gz, .png, .jar): random bytes, incompressible.
//
// Everything comes from one PCG stream per layer, so a layer is a function of its seed.

// fileKind is a kind of file content.
type fileKind int

const (
	kindText fileKind = iota
	kindBinary
	kindAsset
)

// profile is the mix of one layer: the share of bytes of each kind (summing to 1) and a
// directory prefix for its files.
type profile struct {
	text, binary, asset float64
	root                string // "" for a root file system, "opt/app-03" for an app
}

// mtime of every entry of a generated layer.
var layerTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// vocabulary is the word list of generated text with a 64 Ki-entry lookup table that draws
// word indexes with a Zipf-like distribution.
type vocabulary struct {
	words []string
	table [1 << 16]uint16
}

func newVocabulary(seed uint64) *vocabulary {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	consonants := "bcdfghjklmnprstvwxz"
	vowels := "aeiouy"
	v := &vocabulary{}
	seen := map[string]bool{}
	for len(v.words) < 6000 {
		var sb strings.Builder
		syl := 1 + rng.IntN(4)
		for range syl {
			sb.WriteByte(consonants[rng.IntN(len(consonants))])
			sb.WriteByte(vowels[rng.IntN(len(vowels))])
			if rng.IntN(3) == 0 {
				sb.WriteByte(consonants[rng.IntN(len(consonants))])
			}
		}
		w := sb.String()
		if !seen[w] {
			seen[w] = true
			v.words = append(v.words, w)
		}
	}
	// Zipf weights 1/(i+1) spread over the table.
	var total float64
	for i := range v.words {
		total += zipf(i)
	}
	pos := 0
	var acc float64
	for i := range v.words {
		acc += zipf(i)
		end := int(acc / total * float64(len(v.table)))
		for ; pos < end && pos < len(v.table); pos++ {
			v.table[pos] = uint16(i)
		}
	}
	for ; pos < len(v.table); pos++ {
		v.table[pos] = uint16(len(v.words) - 1)
	}
	return v
}

// zipf is the weight of the i-th word.
func zipf(i int) float64 { return math.Pow(float64(i+1), -1.15) }

func (v *vocabulary) word(r uint64) string { return v.words[v.table[r&0xffff]] }

// generator writes the files of one layer.
type generator struct {
	rng   *rand.Rand
	voc   *vocabulary
	buf   []byte
	lines []string  // recent lines of text, repeated by text
	byteT [256]byte // skewed byte distribution for code-like sections
}

func newGenerator(seed uint64, voc *vocabulary) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, 0xda4c)), voc: voc}
	// Code-like bytes: a few values are very common (0x00, 0xff, opcodes), most are rare.
	common := []byte{0x00, 0xff, 0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85, 0x84, 0x24, 0x01, 0xc3, 0x83, 0x74, 0x75, 0x41}
	for i := range g.byteT {
		if i < 192 {
			g.byteT[i] = common[i%len(common)]
		} else {
			g.byteT[i] = byte(g.rng.Uint32())
		}
	}
	return g
}

var punct = []string{"(", ")", " = ", ", ", ".", "; ", " {", "}", ": ", " := ", " + ", "[", "]", " == ", " != ", "->", "\"", "'", " # ", " // "}

// text appends about n bytes of text. Like real sources and documents it repeats itself:
// many lines are earlier lines again, or earlier lines with one word changed, which is what
// gives text its gzip ratio.
func (g *generator) text(dst []byte, n int) []byte {
	start := len(dst)
	indent := 0
	for len(dst)-start < n {
		r := g.rng.Uint64()
		if k := len(g.lines); k > 0 && r%100 < 45 {
			// An earlier line, maybe with its last word changed.
			prev := g.lines[(r>>8)%uint64(k)]
			if r&(1<<20) != 0 {
				dst = append(dst, prev...)
				continue
			}
			if i := strings.LastIndexByte(prev, ' '); i > 0 {
				dst = append(dst, prev[:i+1]...)
				dst = append(dst, g.voc.word(r>>24)...)
				dst = append(dst, '\n')
				continue
			}
		}
		lineStart := len(dst)
		switch r >> 62 {
		case 0:
			if indent > 0 {
				indent--
			}
		case 1:
			if indent < 4 {
				indent++
			}
		}
		for range indent {
			dst = append(dst, '\t')
		}
		tokens := 2 + int((r>>32)%8)
		for t := 0; t < tokens; t++ {
			x := g.rng.Uint64()
			dst = append(dst, g.voc.word(x)...)
			switch (x >> 16) % 8 {
			case 0, 1, 2, 3:
				dst = append(dst, ' ')
			case 4:
				dst = append(dst, punct[(x>>24)%uint64(len(punct))]...)
			case 5:
				dst = append(dst, '_')
			case 6:
				dst = fmt.Appendf(dst, "%d ", (x>>24)%16)
			case 7:
				dst = append(dst, punct[(x>>24)%uint64(len(punct))]...)
				dst = append(dst, ' ')
			}
		}
		dst = append(dst, '\n')
		line := string(dst[lineStart:])
		if len(g.lines) < 256 {
			g.lines = append(g.lines, line)
		} else {
			g.lines[(r>>40)%256] = line
		}
	}
	return dst[:start+n]
}

// random appends n random bytes.
func (g *generator) random(dst []byte, n int) []byte {
	for n >= 8 {
		dst = binary.LittleEndian.AppendUint64(dst, g.rng.Uint64())
		n -= 8
	}
	for ; n > 0; n-- {
		dst = append(dst, byte(g.rng.Uint32()))
	}
	return dst
}

// code appends n bytes drawn from the skewed byte distribution.
func (g *generator) code(dst []byte, n int) []byte {
	for n >= 8 {
		x := g.rng.Uint64()
		for k := 0; k < 8; k++ {
			dst = append(dst, g.byteT[byte(x>>(8*k))])
		}
		n -= 8
	}
	for ; n > 0; n-- {
		dst = append(dst, g.byteT[byte(g.rng.Uint32())])
	}
	return dst
}

// binary appends an executable-looking file of n bytes: a header, code, a string table,
// zero padding and some data.
func (g *generator) binaryFile(dst []byte, n int) []byte {
	start := len(dst)
	dst = append(dst, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0)
	for len(dst)-start < n {
		left := n - (len(dst) - start)
		chunk := min(left, 4096+int(g.rng.Uint64()%(64<<10)))
		switch g.rng.Uint64() % 20 {
		case 0, 1, 2, 3, 4, 5, 6, 7, 8:
			dst = g.code(dst, chunk)
		case 9, 10, 11, 12, 13:
			dst = g.text(dst, chunk)
		case 14, 15, 16, 17:
			dst = append(dst, make([]byte, chunk)...)
		default:
			dst = g.random(dst, chunk)
		}
	}
	return dst[:start+n]
}

// logUniform returns a size between lo and hi, uniform on a log scale.
func (g *generator) logUniform(lo, hi int) int {
	x := g.rng.Float64()
	return int(float64(lo) * math.Pow(float64(hi)/float64(lo), x))
}

// writeLayer writes an uncompressed layer tar of about size bytes of file content to w.
func (g *generator) writeLayer(w io.Writer, size int64, p profile) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	mkdirs := func(dir string) error {
		var missing []string
		for d := dir; d != "." && d != "/" && d != "" && !dirs[d]; d = path.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			d := missing[i]
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: layerTime, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		return nil
	}
	var written int64
	for n := 0; written < size; n++ {
		u := g.rng.Float64()
		var kind fileKind
		var fsize int
		switch {
		case u < p.text:
			kind, fsize = kindText, g.logUniform(200, 256<<10)
		case u < p.text+p.binary:
			kind, fsize = kindBinary, g.logUniform(16<<10, 8<<20)
		default:
			kind, fsize = kindAsset, g.logUniform(2<<10, 2<<20)
		}
		// Weights are by bytes: the expected sizes differ, so scale the draw by a
		// kind-specific acceptance to keep the byte mix close to the profile.
		if !g.accept(kind) {
			n--
			continue
		}
		if left := size - written; int64(fsize) > left {
			fsize = int(left)
		}
		name := g.fileName(kind, n, p.root)
		if err := mkdirs(path.Dir(name)); err != nil {
			return err
		}
		g.buf = g.buf[:0]
		switch kind {
		case kindText:
			g.buf = g.text(g.buf, fsize)
		case kindBinary:
			g.buf = g.binaryFile(g.buf, fsize)
		default:
			g.buf = g.random(g.buf, fsize)
		}
		mode := int64(0o644)
		if kind == kindBinary {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(g.buf)), ModTime: layerTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(g.buf); err != nil {
			return err
		}
		written += int64(len(g.buf))
	}
	return tw.Close()
}

// accept thins out draws of kinds whose files are large on average, so that the profile's
// shares hold for bytes rather than for file counts. The mean sizes of the log-uniform
// ranges above are about 48 KiB (text), 1.9 MiB (binary) and 390 KiB (asset).
func (g *generator) accept(k fileKind) bool {
	const textMean, binMean, assetMean = 48 << 10, 1900 << 10, 390 << 10
	var p float64
	switch k {
	case kindText:
		p = 1
	case kindBinary:
		p = float64(textMean) / binMean
	default:
		p = float64(textMean) / assetMean
	}
	return g.rng.Float64() < p
}

var (
	textDirs    = []string{"usr/share/doc", "usr/lib/python3/dist-packages", "etc", "usr/share/man/man1", "usr/include", "usr/share/perl5", "lib/node_modules", "srv/www"}
	textExts    = []string{".py", ".txt", ".conf", ".h", ".js", ".pm", ".md", ".html", ".json", ".sh"}
	binDirs     = []string{"usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/libexec", "lib/x86_64-linux-gnu"}
	assetDirs   = []string{"usr/share/icons", "usr/share/fonts", "usr/share/java", "usr/share/locale", "var/cache"}
	assetExts   = []string{".png", ".gz", ".jar", ".woff2", ".mo", ".xz"}
	binSuffixes = []string{"", ".so", ".so.1", ".so.6", ".a"}
)

// fileName is a plausible, unique path for the n-th file of a layer.
func (g *generator) fileName(k fileKind, n int, root string) string {
	x := g.rng.Uint64()
	pkg := g.voc.word(x) + "-" + g.voc.word(x>>20)
	var p string
	switch k {
	case kindText:
		p = fmt.Sprintf("%s/%s/%s%03d%s", textDirs[(x>>40)%uint64(len(textDirs))], pkg, g.voc.word(x>>44), n, textExts[(x>>56)%uint64(len(textExts))])
	case kindBinary:
		p = fmt.Sprintf("%s/%s%03d%s", binDirs[(x>>40)%uint64(len(binDirs))], pkg, n, binSuffixes[(x>>56)%uint64(len(binSuffixes))])
	default:
		p = fmt.Sprintf("%s/%s/%s%03d%s", assetDirs[(x>>40)%uint64(len(assetDirs))], pkg, g.voc.word(x>>44), n, assetExts[(x>>56)%uint64(len(assetExts))])
	}
	if root != "" {
		p = root + "/" + p
	}
	return p
}
