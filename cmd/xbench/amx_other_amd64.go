//go:build !linux

package main

import "errors"

// requestAMX: only Linux is known to this probe; elsewhere the tiles are
// not tried.
func requestAMX() error {
	return errors.New("the tile permission is only requested on Linux; not tried on this OS")
}
