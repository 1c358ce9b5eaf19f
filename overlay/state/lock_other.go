//go:build !unix

package state

import (
	"context"
	"os"
	"time"
)

// lockFile is a no-op where flock does not exist; bbolt's own lock still
// guards the database once it is open.
func lockFile(context.Context, *os.File, time.Duration) error { return nil }

func unlockFile(*os.File) {}
