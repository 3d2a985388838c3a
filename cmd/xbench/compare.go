package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aclements/go-moremath/stats"
)

// compareRow is one result found in the old report, the new one, or both.
type compareRow struct {
	old, new *Result
	// ratio is new over old median time: above 1 is slower.
	ratio float64
	// p is the two-sided p-value of the Mann–Whitney U test of the two
	// results' samples (benchstat's test), or −1 where it was not run.
	p       float64
	verdict string // slower, faster, same, ~, too few samples, no samples, only old, only new, n/a
}

// Verdicts of a compared pair.
const (
	verdictSlower  = "slower"
	verdictFaster  = "faster"
	verdictSame    = "same"
	verdictNoise   = "~"
	verdictFew     = "too few samples"
	verdictNoSampl = "no samples"
)

// compareReports matches the results of two reports by case, mode,
// implementation, shape, threads and sweep point. It calls a change only
// when the rank test of the two sets of timed calls finds the difference
// outside the noise (p < alpha); then a median ratio beyond threshold
// (0.05: more than 5% either way) is slower or faster, and a smaller one
// same. Otherwise the verdict is "~" (no difference the samples can tell),
// "too few samples" when even fully separated samples of those sizes could
// not reach alpha, or "no samples" for a report of an older xbench.
func compareReports(old, new *Report, threshold, alpha float64) []compareRow {
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
			rows = append(rows, compareRow{new: n, p: -1, verdict: "only new"})
			continue
		}
		matched[k] = true
		row := compareRow{old: o, new: n, p: -1, verdict: "n/a"}
		if o.State == stateOK && n.State == stateOK && o.MedianMs > 0 && n.MedianMs > 0 {
			row.ratio = n.MedianMs / o.MedianMs
			row.p, row.verdict = judge(o.SamplesMs, n.SamplesMs, row.ratio, threshold, alpha)
		}
		rows = append(rows, row)
	}
	for i := range old.Results {
		if o := &old.Results[i]; !matched[o.key()] {
			rows = append(rows, compareRow{old: o, p: -1, verdict: "only old"})
		}
	}
	return rows
}

// judge returns the p-value of the rank test of samples a and b, and the
// verdict on a median ratio b/a (see compareReports).
func judge(a, b []float64, ratio, threshold, alpha float64) (float64, string) {
	if len(a) == 0 || len(b) == 0 {
		return -1, verdictNoSampl
	}
	if minP(len(a), len(b)) >= alpha {
		return -1, verdictFew
	}
	res, err := stats.MannWhitneyUTest(a, b, stats.LocationDiffers)
	if err != nil { // all samples equal: nothing differs
		return 1, verdictNoise
	}
	switch p := res.P; {
	case p >= alpha:
		return p, verdictNoise
	case ratio > 1+threshold:
		return p, verdictSlower
	case ratio < 1/(1+threshold):
		return p, verdictFaster
	default:
		return p, verdictSame
	}
}

// minP is the smallest two-sided p-value the exact Mann–Whitney test can
// give for samples of n1 and n2: 2/C(n1+n2, n1), both samples wholly apart.
func minP(n1, n2 int) float64 {
	c := 1.0
	for i := 1; i <= n1; i++ {
		c = c * float64(n2+i) / float64(i)
	}
	return math.Min(1, 2/c)
}

// envDiff lists what differs between the environments of two reports that
// can change their times: the CPU, the kernels, OpenBLAS's core, the Go
// build and GOMAXPROCS, and the variables that steer OpenBLAS, Go's
// scheduler or the peers.
func envDiff(a, b *Env) []string {
	if a.Time == "" || b.Time == "" {
		var which []string
		if a.Time == "" {
			which = append(which, "old")
		}
		if b.Time == "" {
			which = append(which, "new")
		}
		return []string{fmt.Sprintf("the %s file records no environment (a CSV of an older xbench): the machines cannot be compared", strings.Join(which, " and "))}
	}
	var d []string
	diff := func(what, x, y string) {
		if x != y {
			if x == "" {
				x = "(none)"
			}
			if y == "" {
				y = "(none)"
			}
			d = append(d, fmt.Sprintf("%s: %s → %s", what, x, y))
		}
	}
	itoa := strconv.Itoa
	diff("cpu", a.CPU, b.CPU)
	diff("cores", itoa(a.PhysicalCores)+"/"+itoa(a.LogicalCores), itoa(b.PhysicalCores)+"/"+itoa(b.LogicalCores))
	diff("isa", strings.Join(a.ISA, " "), strings.Join(b.ISA, " "))
	diff("GOMAXPROCS", itoa(a.GOMAXPROCS), itoa(b.GOMAXPROCS))
	diff("go", a.GoVersion+" "+a.GOOS+"/"+a.GOARCH, b.GoVersion+" "+b.GOOS+"/"+b.GOARCH)
	diff("backends", a.Backends, b.Backends)
	diff("openblas", a.OpenBLAS.Config, b.OpenBLAS.Config)
	diff("openblas core", a.OpenBLAS.CoreName, b.OpenBLAS.CoreName)
	diff("layer products on", a.OpenBLAS.Kernel, b.OpenBLAS.Kernel)
	diff("row pass", a.OpenBLAS.RowPass, b.OpenBLAS.RowPass)
	keys := slices.Clone(envVarNames)
	for _, m := range []map[string]string{a.EnvVars, b.EnvVars} {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	for _, k := range keys {
		x, okx := a.EnvVars[k]
		y, oky := b.EnvVars[k]
		if !okx {
			x = "(unset)"
		}
		if !oky {
			y = "(unset)"
		}
		if x != y {
			d = append(d, fmt.Sprintf("%s: %s → %s", k, x, y))
		}
	}
	return d
}

// writeCompare prints the environment differences, the rows as a table,
// then the geometric mean of the time ratios and the count of changes.
func writeCompare(w io.Writer, oldName, newName string, old, new *Report, rows []compareRow, threshold, alpha float64) {
	fmt.Fprintf(w, "old: %s\nnew: %s\n", oldName, newName)
	if d := envDiff(&old.Env, &new.Env); len(d) > 0 {
		fmt.Fprintln(w, "\nTHE ENVIRONMENTS DIFFER; a change below may come from these, not from the code:")
		for _, s := range d {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\timpl\tthreads\tpoint\told ms\tnew ms\tnew/old\tp\tn\told GFLOP/s\tnew GFLOP/s\tverdict\t")
	logSum, n, slower, faster := 0.0, 0, 0, 0
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
		ratio, p, count := "-", "-", "-"
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.3f", r.ratio)
			logSum += math.Log(r.ratio)
			n++
		}
		if r.p >= 0 {
			p = fmt.Sprintf("%.3f", r.p)
		}
		if r.old != nil && r.new != nil {
			count = fmt.Sprintf("%d+%d", len(r.old.SamplesMs), len(r.new.SamplesMs))
		}
		switch r.verdict {
		case verdictSlower:
			slower++
		case verdictFaster:
			faster++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			ref.displayCase(), ref.Impl, ref.Threads, point, ms(r.old), ms(r.new), ratio, p, count, gf(r.old), gf(r.new), r.verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "p: Mann–Whitney U test of the two files' timed calls (n: their counts); a change is called only when p < %.3g, then slower or faster beyond %.0f%%, same within; ~: no difference outside the noise.\n",
		alpha, 100*threshold)
	if n > 0 {
		fmt.Fprintf(w, "geometric mean of new/old time over %d results: %.3f; %d slower and %d faster by more than %.0f%% (p < %.3g)\n",
			n, math.Exp(logSum/float64(n)), slower, faster, 100*threshold, alpha)
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
	writeCompare(w, o.compare[0], o.compare[1], old, new, compareReports(old, new, o.threshold, o.alpha), o.threshold, o.alpha)
	return nil
}
