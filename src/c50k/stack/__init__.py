"""Running the real components (c50k itself, and later PostgreSQL, Redis, load balancers) as
child processes on free ports, for the local stack, the tests and the benchmarks."""
