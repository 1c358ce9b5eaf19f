//go:build unix

package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes the exclusive advisory lock bbolt takes on its file,
// retrying until timeout or until ctx ends.
func lockFile(ctx context.Context, f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("lock: %w", err)
		case time.Now().After(deadline):
			return fmt.Errorf("%w (lock not released within %s)", ErrInUse, timeout)
		}
		// flock cannot wait with a deadline; poll, as bbolt does.
		retry.Reset(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock: %w", context.Cause(ctx))
		case <-retry.C:
		}
	}
}

func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
