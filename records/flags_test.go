package records

import "flag"

var printVectors = flag.Bool("vectors", false, "print the README test vectors")
