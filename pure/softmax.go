package pure

import "math"

// SoftmaxRows is the fused row pass of online softmax over one m×n block of
// attention scores s (leading dimension lds), already scaled. For each row r
// it masks, takes the running maximum, exponentiates in place and updates the
// running sum:
//
//	valid(j) = j < lim(r) && (keep == nil || keep[r*ldkeep+j]) && (bias == nil || bias[r*ldbias+j] ≠ −Inf)
//	v_j      = s[r,j] + bias[r*ldbias+j]     (bias term only if bias != nil)
//	mNew     = max(mx[r], max_{valid j} v_j)
//	s[r,j]   = ExpProb(v_j − mNew) if valid(j), else 0
//	corr[r]  = ExpProb(mx[r] − mNew)
//	sum[r]   = sum[r]·corr[r] + Σ_j s[r,j]
//	mx[r]    = mNew
//
// where lim(r) = n, or clamp(lim0+r, 0, n) when causal. ldbias and ldkeep may
// be 0 to use one row for every row. A row with no valid score so far (mNew =
// −Inf) gets s = 0, corr = 1 and keeps sum = 0, so −Inf never meets −Inf in a
// subtraction and no NaN is made. mx, sum and corr have length ≥ m; before the
// first block of a row, mx[r] = −Inf and sum[r] = 0.
//
// Non-finite scores: the mask alone decides what is valid, so a masked
// score never matters, whatever it holds (NaN, ±Inf). A valid v_j that is
// not finite (NaN, +Inf or −Inf), or a NaN mx[r] from an earlier block,
// makes the row NaN: s[r,j] = NaN for every valid j and 0 for the others,
// and mx[r] = sum[r] = corr[r] = NaN.
//
// Callers rescale their output rows by corr and add P·V; after the last block
// a row with sum 0 had no valid key and its output is 0, and a row with sum
// NaN is NaN.
func SoftmaxRows(m, n int, s []float32, lds int, bias []float32, ldbias int, keep []bool, ldkeep int, causal bool, lim0 int, mx, sum, corr []float32) {
	SoftmaxRowsMasked(m, n, s, lds, bias, ldbias, keep, ldkeep, RowMask{Causal: causal, Lim0: lim0}, mx, sum, corr)
}

// RowMask is the structural part of a row pass's mask, computed from the
// row and column indices instead of read from memory. Column d(r) =
// Lim0−1+r is row r's diagonal (its own position: query i + offset − k0
// for a block whose first key is k0).
//
//   - Causal: row r sees columns j < Lim0+r only (j ≤ d(r)).
//   - Window, when above 0: row r sees columns j ≥ Lim0+r−Window only
//     (j > d(r) − Window), so with Causal the Window columns d(r)−Window+1
//     … d(r).
//   - Slope, when not 0: −Slope·(d(r) − j) is added to the score of column
//     j (ALiBi), before the bias and keep rows apply.
//
// The zero RowMask masks nothing.
type RowMask struct {
	Causal bool
	Lim0   int
	Window int
	Slope  float32
}

// Span returns the columns [st, lim) of row r of an n-column block that m
// lets the row see (the ALiBi slope hides none).
func (m *RowMask) Span(r, n int) (st, lim int) {
	lim = n
	if m.Causal {
		lim = min(max(m.Lim0+r, 0), n)
	}
	if m.Window > 0 {
		st = min(max(m.Lim0+r-m.Window, 0), lim)
	}
	return st, lim
}

// SoftmaxRowsMasked is [SoftmaxRows] with the structural mask rm: valid(j)
// also needs st(r) ≤ j < lim(r) as [RowMask] says, and v_j adds rm's ALiBi
// term −Slope·(d(r) − j), computed in float32 as Slope·float32(j − d(r))
// and added to the score before the bias.
func SoftmaxRowsMasked(m, n int, s []float32, lds int, bias []float32, ldbias int, keep []bool, ldkeep int, rm RowMask, mx, sum, corr []float32) {
	negInf := float32(math.Inf(-1))
	for r := 0; r < m; r++ {
		full := s[r*lds : r*lds+n]
		st, lim := rm.Span(r, n)
		clear(full[:st])
		// The row from its first visible column on: the window is a shift.
		row := full[st:]
		lim -= st
		var bias, keep = bias, keep
		if bias != nil {
			bias = bias[r*ldbias+st:]
		}
		if keep != nil {
			keep = keep[r*ldkeep+st:]
		}
		d0 := rm.Lim0 - 1 + r - st // the diagonal, in the shifted row's columns
		var b []float32
		if bias != nil {
			b = bias[:lim]
		}
		var k []bool
		if keep != nil {
			k = keep[:lim]
		}
		v := row[:lim]
		rowMax := negInf
		bad := false
		for j := range v {
			x := v[j]
			if rm.Slope != 0 {
				x += rm.Slope * float32(j-d0)
			}
			if b != nil {
				x += b[j]
			}
			if k != nil && !k[j] || b != nil && b[j] == negInf {
				x = negInf
			} else if x-x != 0 { // NaN or ±Inf on a valid column
				bad = true
			}
			v[j] = x
			rowMax = max(rowMax, x)
		}
		mOld := mx[r]
		if bad || mOld != mOld {
			rowBad(row, lim, b, k)
			mx[r], sum[r], corr[r] = nan, nan, nan
			continue
		}
		mNew := max(mOld, rowMax)
		if mNew == negInf {
			clear(row)
			corr[r] = 1
			continue
		}
		var acc float32
		for j := range v {
			p := ExpProb(v[j] - mNew)
			v[j] = p
			acc += p
		}
		clear(row[lim:])
		c := ExpProb(mOld - mNew)
		corr[r] = c
		sum[r] = sum[r]*c + acc
		mx[r] = mNew
	}
}

var nan = float32(math.NaN())

// rowBad sets the row of a NaN row: NaN on its valid columns, before lim and
// allowed by its keep and bias rows k and b (either nil), 0 on the others.
func rowBad(row []float32, lim int, b []float32, k []bool) {
	for j := range row {
		row[j] = 0
		if j < lim && (k == nil || k[j]) && (b == nil || !math.IsInf(float64(b[j]), -1)) {
			row[j] = nan
		}
	}
}

// ScaleRows multiplies row r of the m×n matrix c (leading dimension ldc) by
// f[r]. A factor of 0 stores exact zeros, whatever the row held before (an
// uninitialised or non-finite row included); a factor of 1 leaves it alone.
func ScaleRows(m, n int, c []float32, ldc int, f []float32) {
	for r := 0; r < m; r++ {
		fr := f[r]
		if fr == 1 {
			continue
		}
		row := c[r*ldc : r*ldc+n]
		if fr == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= fr
		}
	}
}
