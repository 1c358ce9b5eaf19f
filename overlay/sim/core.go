package sim

import "github.com/peername/peername/overlay"

// defaultCore builds the real overlay core.
func defaultCore(_ int, cfg overlay.Config) (Core, error) {
	c, err := overlay.NewCore(cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// *overlay.Core is what the simulator drives.
var (
	_ Core         = (*overlay.Core)(nil)
	_ RecordWalker = (*overlay.Core)(nil)
	_ Publisher    = (*overlay.Core)(nil)
)
