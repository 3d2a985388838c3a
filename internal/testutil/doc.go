// Package testutil holds the helpers that the tests of several packages of
// this module share: NaN guard bands around outputs, bit-exact comparison,
// seeded random fills, the error bounds of float32 products against a
// float64 reference, and float64 references of number formats.
//
// Only _test.go files import it. It imports no package of this module, so
// that the tests of pure, blas and xattn can all use it (pure's non-test
// files still import nothing of the module).
package testutil
