package zstdseek

import (
	"encoding/binary"
	"errors"
)

// Errors callers branch on.
var (
	// ErrNotSeekable: the data does not end with a seek table footer (e.g. plain zstd).
	ErrNotSeekable = errors.New("zstdseek: not a seekable zstd stream (no seek table)")
	// ErrBadSeekTable: a seek table footer is there, but the table or a frame it describes
	// is inconsistent. Errors wrapping it say what is wrong.
	ErrBadSeekTable = errors.New("zstdseek: invalid seek table")
)

const (
	// maxFrameSize bounds a frame's decompressed size (and WriterOptions.FrameSize): the
	// Reader holds whole frames in memory.
	maxFrameSize = 256 << 20
	// maxSkippableSize bounds a skippable frame's payload.
	maxSkippableSize = 256 << 20
	// maxFrames bounds the number of entries, as the reference implementation does
	// (ZSTD_SEEKABLE_MAXFRAMES).
	maxFrames = 0x8000000

	defaultFrameSize = 4 << 20
	defaultLevel     = 3

	seekTableMagic     = 0x184D2A5E
	skippableMagicLow  = 0x184D2A50
	skippableMagicMask = 0xFFFFFFF0
	seekableMagic      = 0x8F92EAB1

	skippableHeaderSize = 8
	footerSize          = 9
	entrySize           = 8
	entrySizeChecksum   = 12

	descChecksum = 0x80 // Checksum_Flag
	descReserved = 0x7C // Reserved_Bits: must be zero; bits 0-1 are unused and ignored

	// minFrameSize is the smallest frame an entry can describe: a skippable frame header.
	// (The smallest zstd frame is 9 bytes.) Refusing smaller entries also bounds the number
	// of entries by the file size.
	minFrameSize = skippableHeaderSize
)

// entry is one seek table entry.
type entry struct {
	c, d uint32 // compressed and decompressed size
}

// isSkippableMagic reports whether m is one of the 16 skippable frame magic numbers.
func isSkippableMagic(m uint32) bool { return m&skippableMagicMask == skippableMagicLow }

// seekTableSize is the size of the seek table frame (no checksums) of n entries.
func seekTableSize(n int) int64 {
	return skippableHeaderSize + int64(n)*entrySize + footerSize
}

// appendSeekTable appends the seek table frame (no checksums) for entries to b.
func appendSeekTable(b []byte, entries []entry) []byte {
	b = binary.LittleEndian.AppendUint32(b, seekTableMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)*entrySize+footerSize))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, e.c)
		b = binary.LittleEndian.AppendUint32(b, e.d)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	b = append(b, 0)
	return binary.LittleEndian.AppendUint32(b, seekableMagic)
}
