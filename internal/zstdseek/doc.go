// Package zstdseek writes and reads the zstd seekable format, as facebook/zstd's
// contrib/seekable_format/zstd_seekable_compression_format.md specifies it:
//
//	stream     = *( zstd-frame / skippable-frame ) seek-table
//	seek-table = skippable header (magic 0x184D2A5E, LE uint32 length = entries + 9)
//	             *entry footer
//	entry      = LE uint32 compressed size, LE uint32 decompressed size
//	             [LE uint32 checksum, present when descriptor bit 7 is set]
//	footer     = LE uint32 number of entries, 1-byte descriptor, LE uint32 magic 0x8F92EAB1
//
// Every frame before the seek table has one entry, in file order. A skippable frame
// (magic 0x184D2A50..0x184D2A5F) has an entry with decompressed size 0; the Writer uses
// them to carry metadata (WriteSkippable) that Reader.Skippable returns.
//
// The output of Writer is an ordinary zstd stream: `zstd -d` and any streaming zstd decoder
// decompress it to the bytes written, skipping the skippable frames and the seek table.
// The Writer writes no checksums in the table (descriptor 0); the frames themselves carry
// zstd's content checksum. The Reader accepts tables with checksums and ignores them.
//
// Limits: a frame holds at most 256 MiB of decompressed bytes and a skippable payload at
// most 256 MiB. The Reader refuses larger entries (ErrBadSeekTable) so that
// hostile input cannot make it allocate more than that per frame.
package zstdseek
