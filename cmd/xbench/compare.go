package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// compareRow is one result found in the old report, the new one, or both.
type compareRow struct {
	old, new *Result
	// ratio is new over old median time: above 1 is slower.
	ratio   float64
	verdict string // slower, faster, same, only old, only new, n/a
}

// compareReports matches the results of two reports by case, implementation,
// shape, threads and sweep point, and judges each change against threshold
// (0.05: a change of more than 5% in either direction counts).
func compareReports(old, new *Report, threshold float64) []compareRow {
	var rows []compareRow
	inOld := map[string]*Result{}
	for i := range old.Results {
		inOld[old.Results[i].key()] = &old.Results[i]
	}
	matched := map[string]bool{}
	for i := range new.Results {
		n := &new.Results[i]
		k := n.key()
		o, ok := inOld[k]
		if !ok {
			rows = append(rows, compareRow{new: n, verdict: "only new"})
			continue
		}
		matched[k] = true
		row := compareRow{old: o, new: n, verdict: "n/a"}
		if o.State == stateOK && n.State == stateOK && o.MedianMs > 0 && n.MedianMs > 0 {
			row.ratio = n.MedianMs / o.MedianMs
			switch {
			case row.ratio > 1+threshold:
				row.verdict = "slower"
			case row.ratio < 1/(1+threshold):
				row.verdict = "faster"
			default:
				row.verdict = "same"
			}
		}
		rows = append(rows, row)
	}
	for i := range old.Results {
		if o := &old.Results[i]; !matched[o.key()] {
			rows = append(rows, compareRow{old: o, verdict: "only old"})
		}
	}
	return rows
}

// writeCompare prints the rows as a table, then the geometric mean of the
// time ratios and the count of regressions.
func writeCompare(w io.Writer, oldName, newName string, rows []compareRow, threshold float64) {
	fmt.Fprintf(w, "old: %s\nnew: %s\n\n", oldName, newName)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\timpl\tthreads\tpoint\told ms\tnew ms\tnew/old\told GFLOP/s\tnew GFLOP/s\tverdict\t")
	logSum, n, slower := 0.0, 0, 0
	for _, r := range rows {
		ref := r.new
		if ref == nil {
			ref = r.old
		}
		point := "-"
		if ref.Sweep != "" {
			point = fmt.Sprintf("%s=%d", ref.Sweep, ref.Value)
		}
		ms := func(x *Result) string {
			if x == nil || x.State != stateOK {
				return "-"
			}
			return fmtMs(x.MedianMs)
		}
		gf := func(x *Result) string {
			if x == nil || x.State != stateOK {
				return "-"
			}
			return fmt.Sprintf("%.4g", x.GFLOPs)
		}
		ratio := "-"
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.3f", r.ratio)
			logSum += math.Log(r.ratio)
			n++
		}
		if r.verdict == "slower" {
			slower++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			ref.Case, ref.Impl, ref.Threads, point, ms(r.old), ms(r.new), ratio, gf(r.old), gf(r.new), r.verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if n > 0 {
		fmt.Fprintf(w, "geometric mean of new/old time over %d results: %.3f; %d slower by more than %.0f%%\n",
			n, math.Exp(logSum/float64(n)), slower, 100*threshold)
	} else {
		fmt.Fprintln(w, "no result is in both files")
	}
}

// runCompare is xbench -compare old new.
func runCompare(o *options, w io.Writer) error {
	old, err := readReport(o.compare[0])
	if err != nil {
		return err
	}
	new, err := readReport(o.compare[1])
	if err != nil {
		return err
	}
	writeCompare(w, o.compare[0], o.compare[1], compareReports(old, new, o.threshold), o.threshold)
	return nil
}
