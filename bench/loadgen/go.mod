module tagline/bench/loadgen

go 1.22
