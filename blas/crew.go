package blas

// A Crew runs the items of one phase of a call — the chunks of its
// products, or its attention tasks — on the calling goroutine and on the
// backend's own threads, in one crossing, where the caller would otherwise
// hand items to helper goroutines. It is a backend's option: [CrewOf]
// reports whether a backend has one.
//
// The OpenBLAS backend's crew threads are C threads that poll between the
// phases of a call and sleep when idle: the Go scheduler never sees them.
// Go helpers that poll between phases lasting tens of microseconds cost a
// small call more than they bring (see team.c). The crew's protocol is the
// one of xattn's pool: the caller never waits for a thread that has not
// started, many calls at once share the crew's threads, and a phase's
// results are what the same items give run one by one.
//
// A Crew is one call's at a time: a caller in flight holds it (xattn keeps
// one per pooled pipeline). Each method runs every item and returns true, or
// runs nothing and returns false when it cannot run the phase (the caller
// then runs the items itself); it panics on invalid arguments as Sgemm and
// Attend do.
type Crew interface {
	// Products runs the chunks of the products gs on threads workers (the
	// caller included): chunk c is rows [c.R0, c.R1) and columns
	// [c.C0, c.C1) of gs[c.G], computed as Sgemm computes that part alone.
	// Each product is one matrix (Count 1, TransB, Alpha 1, Beta 0) whose
	// Packed is set; a chunk's columns start a column step (Steps). It
	// returns false where a product's Packed is not this backend's layout.
	Products(gs []Batch, chunks []Chunk, threads int) bool
	// Attend runs tasks [0, a.Tasks()) of a in items of chunk tasks on
	// threads workers, as Attend(a, t0, t1, scratch[s·n:][:n]) would on
	// worker slot s, with n = ScratchLen(a); scratch holds threads·n values.
	Attend(a *Attention, chunk, threads int, scratch []float32) bool
}

// Chunk is a block of one product of a [Crew] phase: rows [R0, R1) and
// columns [C0, C1) of product G.
type Chunk struct{ G, R0, R1, C0, C1 int }

// CrewOf returns a new crew of be, or nil when be has none. A crew holds
// only a little memory (its task and chunk lists); the garbage collector
// takes it.
func CrewOf(be Backend) Crew {
	if c, ok := be.(interface{ newCrew() Crew }); ok {
		return c.newCrew()
	}
	return nil
}
