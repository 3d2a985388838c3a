package xattn

// SkipForcedBF16Missing is skipForcedBF16Missing, for the external tests.
var SkipForcedBF16Missing = skipForcedBF16Missing
