//go:build linux

package benchwork

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// run is one result line of a benchmark variant.
type run map[string]float64 // unit → value

// benchLine matches "BenchmarkWrite12/darc-docker-2   1   123 ns/op   4.5 MB/s …".
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)/(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// target is what the issues ask of a darc variant, against a peer variant of the same
// benchmark.
type target struct {
	peer     string
	speedup  float64 // peer time / darc time at least this (0: none)
	maxRatio float64 // darc time / peer time at most this (0: none)
	zeroTemp bool
	onceRead bool
	peakMB   float64
	// shareBase and shareScale, when shareScale is set, replace maxRatio for a variant that
	// reports a "share" metric (the part of the peer's work it is asked to do, 0 to 1): its
	// time / peer time must be at most shareBase + shareScale × share.
	shareBase, shareScale float64
	// maxSizeX: the variant's "size-x" metric (its output's size over a reference size the
	// benchmark logs) at most this (0: none).
	maxSizeX float64
}

// targets of issue 3 (point 9) and issue 4 (point 6), by benchmark; they apply to the
// variants whose name starts with "darc".
var targets = map[string]target{
	"Write12":         {peer: "ci-docker", speedup: 3, zeroTemp: true, onceRead: true, peakMB: 100},
	"Load12":          {peer: "ci", speedup: 2, peakMB: 150},
	"Load12ZstdStdin": {peer: "ci", speedup: 2, zeroTemp: true, peakMB: 150},
	"Merge":           {peer: "cat", maxRatio: 1.5, peakMB: 150},
	// Issue 13, seekable .tar.zst bundles: listing one costs a small part of decompressing it
	// and writes nothing; loading one image costs its share of the bytes (plus a little);
	// compressing while saving costs at most 30 % and gives about what the zstd CLI gives;
	// loading in place is no slower than loading a plain .tar.zst in one pass.
	"BundleList":     {peer: "zstd-dc", maxRatio: 0.05, zeroTemp: true},
	"BundleLoadOne":  {peer: "darc-all", shareBase: 0.05, shareScale: 1.3},
	"BundleSave":     {peer: "plain", maxRatio: 1.3, maxSizeX: 1.03},
	"BundleLoadFull": {peer: "darc-stream", maxRatio: 1.0},
	// Issue 14, darc serve: 8 clients pulling every blob at ≥ 80 % of the throughput of 8
	// cats of the archive (time at most 1.25 ×), in under 100 MB.
	"Serve": {peer: "cat", maxRatio: 1.25, peakMB: 100},
}

// Table reads `go test -bench` output produced by RunChild benchmarks and writes one row per
// variant: median wall time (and the range over -count runs), throughput, CPU time, CPU
// contention, temp bytes, extra writes, peak RSS, layer reads, the ratio to the benchmark's
// peer and whether the issues' targets are met. Ratios and targets use each variant's best
// (shortest) run, the one least disturbed by whatever else the machine ran; the ratio of the
// medians is shown too.
func Table(r io.Reader, w io.Writer) error {
	type key struct{ bench, variant string }
	var order []key
	runs := map[key][]run{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		k := key{m[1], m[2]}
		f := strings.Fields(m[3])
		rr := run{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			rr[f[i+1]] = v
		}
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], rr)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	median := func(rs []run, unit string) (float64, bool) {
		var v []float64
		for _, r := range rs {
			if x, ok := r[unit]; ok {
				v = append(v, x)
			}
		}
		if len(v) == 0 {
			return 0, false
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2], true
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tvariant\truns\ttime s (min-max)\tMB/s\tcpu s\trunq wait s\ttemp MB\textra writes MB\tpeak RSS MB\treads/layer (max)\tvs peer (best runs)\ttargets")
	for _, k := range order {
		rs := runs[k]
		var secs []float64
		for _, r := range rs {
			secs = append(secs, r["ns/op"]/1e9)
		}
		t, _ := median(rs, "ns/op")
		t /= 1e9
		cell := func(unit string, scale float64, format string) string {
			v, ok := median(rs, unit)
			if !ok {
				return "-"
			}
			return fmt.Sprintf(format, v/scale)
		}
		timeCell := fmt.Sprintf("%.2f", t)
		if len(secs) > 1 {
			timeCell += fmt.Sprintf(" (%.2f-%.2f)", slices.Min(secs), slices.Max(secs))
		}
		reads := "-"
		if v, ok := median(rs, "reads/layer"); ok {
			mx, _ := median(rs, "maxreads/layer")
			reads = fmt.Sprintf("%.2f (%.0f)", v, mx)
		}
		temp := cell("temp-B", 1e6, "%.1f")
		if v, ok := median(rs, "spool-B"); ok && v > 0 {
			temp += fmt.Sprintf(" (spool %.1f)", v/1e6)
		}
		vs, verdict := "", ""
		tg, hasTarget := targets[k.bench]
		if hasTarget && k.variant != tg.peer {
			if prs := runs[key{k.bench, tg.peer}]; len(prs) > 0 && t > 0 {
				pmed, _ := median(prs, "ns/op")
				pmed /= 1e9
				pbest := math.Inf(1)
				for _, r := range prs {
					pbest = min(pbest, r["ns/op"]/1e9)
				}
				best := slices.Min(secs)
				maxRatio := tg.maxRatio
				if share, ok := median(rs, "share"); ok && tg.shareScale > 0 {
					maxRatio = tg.shareBase + tg.shareScale*share
				}
				if maxRatio > 0 {
					vs = fmt.Sprintf("%.2fx %s time (median %.2fx)", best/pbest, tg.peer, t/pmed)
					if maxRatio != tg.maxRatio {
						vs += fmt.Sprintf(", bound %.2fx", maxRatio)
					}
				} else {
					vs = fmt.Sprintf("%.2fx faster than %s (median %.2fx)", pbest/best, tg.peer, pmed/t)
				}
				if strings.HasPrefix(k.variant, "darc") {
					var miss []string
					if tg.speedup > 0 && pbest/best < tg.speedup {
						miss = append(miss, fmt.Sprintf("speed<%gx", tg.speedup))
					}
					if maxRatio > 0 && best/pbest > maxRatio {
						miss = append(miss, fmt.Sprintf("time>%.2fx", maxRatio))
					}
					if v, ok := median(rs, "size-x"); tg.maxSizeX > 0 && ok && v > tg.maxSizeX {
						miss = append(miss, fmt.Sprintf("size>%gx", tg.maxSizeX))
					}
					if v, _ := median(rs, "temp-B"); tg.zeroTemp && v > 0 {
						miss = append(miss, "temp>0")
					}
					if v, ok := median(rs, "maxreads/layer"); tg.onceRead && ok && v > 1 {
						miss = append(miss, "layer read >1x")
					}
					if v, _ := median(rs, "peak-MB"); tg.peakMB > 0 && v >= tg.peakMB {
						miss = append(miss, fmt.Sprintf("peak>=%gMB", tg.peakMB))
					}
					verdict = "met"
					if len(miss) > 0 {
						verdict = "MISSED: " + strings.Join(miss, ", ")
					}
				}
			}
		}
		// A variant whose output size matters reports it (out-MB), and its ratio to a
		// reference the benchmark logs (size-x).
		if v, ok := median(rs, "out-MB"); ok {
			note := fmt.Sprintf("out %.1f MB", v)
			if x, ok := median(rs, "size-x"); ok {
				note += fmt.Sprintf(" = %.3fx reference", x)
			}
			if vs != "" {
				vs += "; "
			}
			vs += note
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			k.bench, k.variant, len(rs), timeCell, cell("MB/s", 1, "%.0f"), cell("cpu-s", 1, "%.1f"), cell("runqwait-s", 1, "%.1f"),
			temp, cell("extra-wB", 1e6, "%.1f"), cell("peak-MB", 1, "%.0f"), reads, vs, verdict)
	}
	return tw.Flush()
}
