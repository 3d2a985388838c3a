package xattn

// This file holds the one count of work in this package: every formula of
// floating-point operations (FLOPs, Layer.FLOPs, FiLM.FLOPs, the absorbed
// form's count, the threads' budget of a call, the choice of the absorbed
// form) is a list of the products the code runs, summed by productFLOPs.

// product is m·n dot products of length k: the product of an m×k by a k×n
// matrix. A batch of products of one size is one product with the count folded
// into m; an attention core over p (query, key) pairs per head is H·p dot
// products of length dk (the scores) and H·p·dv multiply-adds (P·V).
type product struct{ m, n, k float64 }

// productFLOPs returns the floating-point operations of the products ps: 2 per
// multiply-add.
func productFLOPs(ps ...product) float64 {
	var f float64
	for _, p := range ps {
		f += 2 * p.m * p.n * p.k
	}
	return f
}

// queryProduct is the query projection of rq rows, Q = x·Wqᵀ.
func queryProduct(c *Config, rq float64) product {
	return product{rq, float64(c.Heads * c.HeadDim), float64(c.QueryDim)}
}

// outputProduct is the output projection of rq rows, y = O·Woᵀ.
func outputProduct(c *Config, rq float64) product {
	return product{rq, float64(c.OutDim), float64(c.Heads * c.ValueHeadDim)}
}

// keyValueProducts are the projections of rkv key and value rows, and the
// attention core over pairs (query, key) pairs per head: what the absorbed
// form replaces.
func keyValueProducts(c *Config, rkv, pairs float64) [4]product {
	h, g := float64(c.Heads), float64(c.KVHeads)
	dk, dv := float64(c.HeadDim), float64(c.ValueHeadDim)
	return [4]product{
		{rkv, g * dk, float64(c.ContextDim)}, // K = context·Wkᵀ
		{rkv, g * dv, float64(c.ValueDim)},   // V = value·Wvᵀ
		{h * pairs, 1, dk},                   // S = Q·Kᵀ
		{h * pairs, dv, 1},                   // O = P·V
	}
}

// absorbedProducts are the products of the absorbed form (see runAbsorbed) for
// b sequences of tq queries and tk context rows, other than the query and
// output projections: per head, Q̃ = Q·Wk (dk → Dc), the scores over the
// context rows, P·X over the value rows, and O = Z·Wvᵀ (Dv → dv).
func absorbedProducts(c *Config, b, tq, tk float64) [4]product {
	hq := b * float64(c.Heads) * tq
	dk, dv := float64(c.HeadDim), float64(c.ValueHeadDim)
	dc, dx := float64(c.ContextDim), float64(c.ValueDim)
	return [4]product{
		{hq, dc, dk},
		{hq, tk, dc},
		{hq, dx, tk},
		{hq, dv, dx},
	}
}

// work returns the floating-point operations of a call that projects rq
// query rows and rkv key and value rows, scores pairs (query, key) pairs per
// head and projects rq output rows; see [Layer.FLOPs].
func work(c *Config, rq, rkv, pairs float64) float64 {
	kv := keyValueProducts(c, rkv, pairs)
	return productFLOPs(queryProduct(c, rq), kv[0], kv[1], kv[2], kv[3], outputProduct(c, rq))
}

// flops is FLOPs for a resolved configuration.
func flops(c *Config, s Shape) float64 {
	b, tq, tk := float64(s.Batch), float64(s.Tq), float64(s.Tk)
	return work(c, b*tq, b*tk, b*tq*tk)
}

// absorbedFLOPs is the work of a forward pass of shape s in the absorbed
// form, as flops counts the projected one.
func absorbedFLOPs(c *Config, s Shape) float64 {
	b, tq, tk := float64(s.Batch), float64(s.Tq), float64(s.Tk)
	a := absorbedProducts(c, b, tq, tk)
	return productFLOPs(queryProduct(c, b*tq), a[0], a[1], a[2], a[3], outputProduct(c, b*tq))
}

// filmFLOPs is [FiLM.FLOPs]: the conditioning projection of batch rows
// (γ and β at once, 2·Dim columns) and the modulation γ⊙x + β of batch·t
// rows, one multiply-add a value.
func filmFLOPs(c *FiLMConfig, batch, t int) float64 {
	b, d := float64(batch), float64(c.Dim)
	return productFLOPs(product{b, 2 * d, float64(c.CondDim)}, product{b * float64(t), d, 1})
}
