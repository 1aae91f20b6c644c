-- One fixed request, as wrk's command line gives it (-H for the headers): only the
-- shared report. No request()/response() here, so wrk builds the request once and does not
-- parse the answers' bodies (its cheapest mode); non-2xx is wrk's own errors.status.
dofile("scripts/lib/bench/report.lua")
