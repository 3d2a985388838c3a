//go:build race

package xattn_test

const raceEnabled = true
