package xattn

// Absorbs reports whether l runs a forward pass of shape s in the absorbed
// form (absorb.go), for the external tests.
func Absorbs(l *Layer, s Shape) bool { return l.absorbs(s) }
