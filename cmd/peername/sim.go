package main

import (
	"context"

	"github.com/peername/peername/overlay/sim"
)

func init() {
	register("sim", command{"run the overlay simulator (peername sim -h for its flags)", runSim})
}

// runSim hands the arguments to the simulator, which parses its own flags
// and prints its own report and errors.
func runSim(_ context.Context, e *env, args []string) error {
	if code := sim.Main(args, e.stdout, e.stderr); code != 0 {
		return exitCodeError{code}
	}
	return nil
}
