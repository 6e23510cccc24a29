"""`c50k bench`: the load-test harness that proves (or disproves) the capacity claims.

Load comes from established generators (wrk, h2load) run as several processes over several
loopback addresses; this package starts what it measures, aggregates the generators' raw
output without averaging percentiles, samples the servers, and writes the report.
"""
